//! Progress bar for `get`/`put` of large files, shown only when stderr is a
//! terminal so that scripts and logs stay clean.

use std::io::{IsTerminal, Read, Write};

use indicatif::{ProgressBar, ProgressStyle};

/// Files smaller than this finish too fast for a bar to help.
const MIN_SIZE: u64 = 4 << 20;

pub(crate) struct Bar(Option<ProgressBar>);

impl Bar {
    pub(crate) fn new(size: u64, name: &str) -> Self {
        if size < MIN_SIZE || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let pb = ProgressBar::new(size);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(name.to_owned());
        Bar(Some(pb))
    }

    pub(crate) fn writer<'a, W: Write + 'a>(&self, w: W) -> Box<dyn Write + 'a> {
        match &self.0 {
            Some(pb) => Box::new(pb.wrap_write(w)),
            None => Box::new(w),
        }
    }

    pub(crate) fn reader<'a, R: Read + 'a>(&self, r: R) -> Box<dyn Read + 'a> {
        match &self.0 {
            Some(pb) => Box::new(pb.wrap_read(r)),
            None => Box::new(r),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

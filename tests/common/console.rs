//! `catena serve --console` as a child process for the tests that talk to it: started, its
//! console's address read from its banner, and stopped when the handle drops.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The server process; killed when dropped.
pub(crate) struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` (a `catena serve ... --console`) and returns it with the console's address
/// (`http://127.0.0.1:PORT/`), once the server says it is listening.
pub(crate) fn serve_console(mut command: Command) -> (Served, String) {
    let mut child = command.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let banner = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.starts_with("catena serve: console at "))
        .expect("the console's address is printed");
    let url = banner.rsplit(' ').next().unwrap().to_owned();
    // Keep reading stderr, so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (Served(child), url)
}

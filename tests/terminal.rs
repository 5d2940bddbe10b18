//! The interactive shell on a real pseudo-terminal: lines that arrive together (typed
//! ahead, or pasted where the terminal has no bracketed paste) all run, none is dropped;
//! and the `--join` line that arrives while the prompt waits is printed above the prompt,
//! which is drawn again below it.

mod common;

use common::proxy::Proxy;
use common::{kv_bin, seed_primary, wait_until, KvProcess, PATIENCE};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;

/// `kv ARGS` on the slave side of a new pseudo-terminal, as a user at a terminal runs it;
/// killed on drop.
struct Terminal {
    child: Child,
    input: File,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    fn start(args: &[&str]) -> Terminal {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors into the integers it is given.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned here alone.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup"));
        let mut command = Command::new(kv_bin());
        command
            .args(args)
            .env("RUST_LOG", "warn")
            .env("TERM", "xterm")
            .stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave));
        // SAFETY: only async-signal-safe calls between fork and exec: a new session whose
        // controlling terminal is the pty, as a login shell would have.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn kv on a terminal");
        drop(slave);
        let input = File::from(master.try_clone().expect("dup"));
        let mut output = File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = output.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("screen").extend_from_slice(&buffer[..n]);
            }
        });
        Terminal {
            child,
            input,
            screen,
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("screen")).into_owned()
    }

    fn wait_for(&self, what: &str, shown: impl Fn(&str) -> bool) {
        let seen = wait_until(PATIENCE, || shown(&self.screen()));
        assert!(seen, "never showed {what}: {:?}", self.screen());
    }

    /// Types `keys` in one go, as a fast typist or a paste without bracketing would.
    fn type_keys(&mut self, keys: &str) {
        self.input.write_all(keys.as_bytes()).expect("type");
        self.input.flush().expect("flush");
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn lines_typed_ahead_all_run() {
    let mut shell = Terminal::start(&["primary", "--listen", "127.0.0.1:0"]);
    shell.wait_for("the prompt", |s| s.contains("primary> "));
    shell.type_keys("PUT a 1\rPUT b 2\rPUT c 3\rKEYS\r");
    shell.wait_for("every line's result", |s| {
        s.contains("OK a = 1") && s.contains("OK b = 2") && s.contains("OK c = 3")
    });
    shell.wait_for("the keys", |s| s.contains("a\r\nb\r\nc"));
    shell.type_keys("EXIT\r");
    let exited = wait_until(PATIENCE, || matches!(shell.child.try_wait(), Ok(Some(_))));
    assert!(exited, "EXIT did not end the shell");
}

#[test]
fn the_join_line_is_printed_above_the_prompt() {
    let dir = TempDir::new().expect("tempdir");
    let p_db = dir.path().join("p.db");
    seed_primary(&p_db, 20_000);
    let db = p_db.display().to_string();
    let primary = KvProcess::start(&[
        "primary",
        "--db",
        &db,
        "--listen",
        "127.0.0.1:0",
        "--no-shell",
    ]);
    // ~2 MB at ~1 MB/s: the line arrives while the prompt is already waiting.
    let proxy = Proxy::throttled(&primary.addr(), 100_000, Duration::from_millis(100));
    let r_db = dir.path().join("r.db").display().to_string();
    let shell = Terminal::start(&[
        "replica",
        "--db",
        &r_db,
        "--listen",
        "127.0.0.1:0",
        "--join",
        &proxy.addr,
    ]);
    shell.wait_for("the line", |s| s.contains("Snapshot received"));
    shell.wait_for("a prompt drawn again after the line", |s| {
        s.rsplit("Snapshot received")
            .next()
            .is_some_and(|after| after.contains("replica> "))
    });
    let before = shell.screen();
    let prompt_first = before.find("replica> ").expect("a prompt");
    assert!(
        prompt_first < before.find("Snapshot received").expect("the line"),
        "the line came before the first prompt, so this proves nothing: {before:?}"
    );
}

#[test]
fn flush_asks_before_deleting_every_key() {
    let mut shell = Terminal::start(&["primary", "--listen", "127.0.0.1:0"]);
    shell.wait_for("the prompt", |s| s.contains("primary> "));
    shell.type_keys("PUT a 1\rPUT b 2\r");
    shell.wait_for("the writes", |s| s.contains("OK b = 2"));
    shell.type_keys("FLUSH\r");
    shell.wait_for("the question", |s| {
        s.contains("Delete all 2 keys (on every replica too)? [y/N] ")
    });
    shell.type_keys("n\r");
    shell.wait_for("the refusal", |s| s.contains("Not done."));
    shell.type_keys("GET a\r");
    shell.wait_for("the key kept", |s| s.contains("a -> 1"));
    shell.type_keys("FLUSH\r");
    shell.wait_for("the question again", |s| s.matches("[y/N] ").count() == 2);
    shell.type_keys("y\r");
    shell.wait_for("the flush", |s| s.contains("OK every key deleted"));
    shell.type_keys("GET a\r");
    shell.wait_for("the key gone", |s| s.contains("a -> Not found"));
}

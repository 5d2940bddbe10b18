//! Disk faults under a running primary: the disk fills up, the filesystem turns read-only,
//! the database file (or its `-wal`) is removed, moved away or replaced. In every case a
//! write that cannot be made durable gets exactly one `ERR ` line naming the file and never
//! an `OK`, the node neither panics nor exits, it keeps answering reads, every write that
//! printed `OK` is in the file afterwards (invariant 1), and writes succeed again once the
//! fault is gone.
//!
//! The disk tests mount real filesystems and so need root: a 2 MB tmpfs that is grown with
//! `mount -o remount,size=64m`; and, for a filesystem turning read-only under the node, a
//! small ext4 image on a loop device mounted `errors=remount-ro`, made read-only the way
//! the kernel does it after an I/O error (`/sys/fs/ext4/<dev>/trigger_fs_error`). A tmpfs
//! cannot be remounted read-only (nor `chattr +i` stop writes) while kv holds the database
//! open for writing: the kernel answers EBUSY. The tmpfs is therefore remounted read-only
//! while kv is stopped, and kv must refuse to start on it with one clear line. Where a
//! mount is impossible (not root, no loop device) that test prints why it is skipped and
//! passes; the removal tests need nothing special.

mod common;

use common::{kv_rows, run_with_input, KvProcess};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// Most writes sent while filling the 2 MB disk (each stores ~40 KB: the row and its log entry).
const MAX_FILL_WRITES: usize = 200;

/// Refused writes to see before calling the disk full.
const REFUSALS_WANTED: usize = 5;

/// Runs a system command; `Err` carries its stderr (or why it could not run).
fn sh(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A filesystem mounted inside a temporary directory for one test; unmounted (lazily, so
/// a test failing with the node still running cannot leave it behind) and its loop device
/// detached on drop, before the directory is removed.
struct Mounted {
    point: PathBuf,
    loop_dev: Option<String>,
    dir: TempDir,
}

impl Mounted {
    /// A tmpfs of `size` (e.g. `2m`), or why it cannot be mounted.
    fn tmpfs(size: &str) -> Result<Mounted, String> {
        let dir = TempDir::new().expect("tempdir");
        let point = dir.path().join("disk");
        std::fs::create_dir(&point).expect("mount point");
        let point_arg = point.display().to_string();
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                &point_arg,
            ],
        )?;
        Ok(Mounted {
            point,
            loop_dev: None,
            dir,
        })
    }

    /// A fresh 16 MB ext4 image on a loop device, mounted `errors=remount-ro`.
    fn ext4() -> Result<Mounted, String> {
        let dir = TempDir::new().expect("tempdir");
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(16 << 20))
            .expect("image file");
        let image_arg = image.display().to_string();
        sh("mkfs.ext4", &["-q", "-F", &image_arg])?;
        let out = Command::new("losetup")
            .args(["--find", "--show", &image_arg])
            .output()
            .map_err(|e| format!("losetup: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let point = dir.path().join("disk");
        std::fs::create_dir(&point).expect("mount point");
        let mounted = Mounted {
            point,
            loop_dev: Some(dev),
            dir,
        };
        mounted.mount_ext4(&["-o", "errors=remount-ro"])?;
        Ok(mounted)
    }

    fn mount_ext4(&self, options: &[&str]) -> Result<(), String> {
        let dev = self.loop_dev.as_deref().expect("a loop device");
        let point = self.point.display().to_string();
        let mut args = vec!["-t", "ext4"];
        args.extend_from_slice(options);
        args.extend_from_slice(&[dev, &point]);
        sh("mount", &args)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.point.join(name)
    }

    /// `mount -o remount,OPTIONS`, failing the test if the kernel refuses.
    fn remount(&self, options: &str) {
        let point = self.point.display().to_string();
        sh("mount", &["-o", &format!("remount,{options}"), &point])
            .unwrap_or_else(|e| panic!("remount {options}: {e}"));
    }

    fn unmount(&self) {
        let point = self.point.display().to_string();
        sh("umount", &[&point]).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = sh("umount", &["-l", &self.point.display().to_string()]);
        if let Some(dev) = &self.loop_dev {
            let _ = sh("losetup", &["-d", dev]);
        }
        // `dir` is removed after this, once nothing is mounted in it.
    }
}

/// The mounted filesystem, or `None` after printing why the test is skipped.
fn mounted_or_skip(test: &str, mount: Result<Mounted, String>) -> Option<Mounted> {
    match mount {
        Ok(mounted) => Some(mounted),
        Err(reason) => {
            eprintln!(
                "SKIPPED {test}: cannot mount its test filesystem \
                 (as root, with mount, losetup and mkfs.ext4): {reason}"
            );
            None
        }
    }
}

fn start_primary(db: &Path) -> KvProcess {
    let db = db.display().to_string();
    KvProcess::start(&["primary", "--db", &db, "--listen", "127.0.0.1:0"])
}

fn assert_no_panic(node: &KvProcess) {
    let stderr = node.stderr_text();
    assert!(!stderr.contains("panicked"), "kv panicked: {stderr}");
}

/// What the shell said to each write.
#[derive(Default)]
struct Writes {
    /// Key and value of every write that printed its `OK` line.
    acked: BTreeMap<String, String>,
    /// Keys of writes that printed an `ERR ` line, and the lines.
    refused: Vec<(String, String)>,
}

impl Writes {
    /// Sends `PUT key value`; the reply must be its `OK` line or one `ERR ` line.
    fn put(&mut self, node: &mut KvProcess, key: &str, value: &str) -> bool {
        let reply = node.command(&format!("PUT {key} {value}"));
        if reply == format!("OK {key} = {value}") {
            self.acked.insert(key.to_string(), value.to_string());
            true
        } else {
            assert!(
                reply.starts_with("ERR write failed, nothing was stored: "),
                "PUT {key}: neither its OK nor an ERR line: {:.200}",
                reply
            );
            self.refused.push((key.to_string(), reply));
            false
        }
    }

    fn put_ok(&mut self, node: &mut KvProcess, key: &str, value: &str) {
        assert!(
            self.put(node, key, value),
            "PUT {key} was refused: {:?}",
            self.refused.last()
        );
    }

    /// Every refusal so far contains `needle`.
    fn assert_refusals_say(&self, needle: &str) {
        for (key, line) in &self.refused {
            assert!(
                line.contains(needle),
                "PUT {key}: {line:?} lacks {needle:?}"
            );
        }
    }

    /// The node's last checks: it never panicked; after `kill -9`, every acknowledged
    /// write is stored in `db` and no refused one is.
    fn kill_and_check(&self, mut node: KvProcess, db: &Path) {
        assert_no_panic(&node);
        node.kill();
        self.assert_stored_in(db);
    }

    /// `db` holds every acknowledged write and none of the refused ones.
    fn assert_stored_in(&self, db: &Path) {
        let stored: BTreeMap<String, String> = kv_rows(db).into_iter().collect();
        for (key, value) in &self.acked {
            assert!(
                stored.get(key) == Some(value),
                "{key} was acknowledged but is not stored in {}",
                db.display()
            );
        }
        for (key, _) in &self.refused {
            assert!(
                !stored.contains_key(key),
                "{key} was refused but is stored in {}",
                db.display()
            );
        }
    }
}

/// A 20 KB value, different for each `i`.
fn big_value(i: usize) -> String {
    format!("{i:04}{}", "x".repeat(20_000))
}

/// The reply of `GET key` once `key = value` is stored, without echoing 20 KB on failure.
fn assert_get(node: &mut KvProcess, key: &str, value: &str) {
    let reply = node.command(&format!("GET {key}"));
    assert!(
        reply == format!("{key} -> {value}"),
        "GET {key}: {:.200}",
        reply
    );
}

/// Copies the database and its `-wal` (what a `kill -9` at this moment would leave) into
/// `to`, returning the copy's path.
fn copy_db_files(db: &Path, to: &Path) -> PathBuf {
    let copy = to.join("copy.db");
    std::fs::copy(db, &copy).expect("copy the database file");
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    if wal.exists() {
        std::fs::copy(&wal, format!("{}-wal", copy.display())).expect("copy the -wal file");
    }
    copy
}

#[test]
fn full_disk_refuses_writes_keeps_reading_and_recovers_when_space_is_freed() {
    let test = "full_disk_refuses_writes_keeps_reading_and_recovers_when_space_is_freed";
    let Some(disk) = mounted_or_skip(test, Mounted::tmpfs("2m")) else {
        return;
    };
    let db = disk.path("p.db");
    let mut node = start_primary(&db);
    let mut writes = Writes::default();
    for i in 0..MAX_FILL_WRITES {
        if writes.refused.len() == REFUSALS_WANTED {
            break;
        }
        writes.put(&mut node, &format!("k{i:03}"), &big_value(i));
    }
    // What is on the disk now (all a `kill -9` would leave) holds every acknowledged
    // write and none of the refused ones.
    let outside = TempDir::new().expect("tempdir");
    writes.assert_stored_in(&copy_db_files(&db, outside.path()));
    assert_eq!(
        writes.refused.len(),
        REFUSALS_WANTED,
        "{MAX_FILL_WRITES} writes of 20 KB never filled a 2 MB disk"
    );
    assert!(!writes.acked.is_empty(), "no write fitted on the disk");
    eprintln!("disk full after {} acknowledged writes", writes.acked.len());
    writes.assert_refusals_say(&format!("{} cannot be written", db.display()));
    writes.assert_refusals_say("disk is full");
    // The node is still up and reading; a stray line from a write would show up here.
    let first = writes.acked.keys().next().expect("an acked key").clone();
    let first_value = writes.acked[&first].clone();
    assert_get(&mut node, &first, &first_value);
    assert_eq!(node.command("GET k999"), "k999 -> Not found");
    assert_no_panic(&node);

    disk.remount("size=64m");
    for i in 0..3 {
        writes.put_ok(&mut node, &format!("after{i}"), &big_value(i));
    }
    assert_get(&mut node, "after2", &big_value(2));
    writes.kill_and_check(node, &db);
}

#[test]
fn filesystem_turning_read_only_under_the_node_refuses_writes_and_keeps_reading() {
    let test = "filesystem_turning_read_only_under_the_node_refuses_writes_and_keeps_reading";
    let Some(disk) = mounted_or_skip(test, Mounted::ext4()) else {
        return;
    };
    let dev = disk.loop_dev.clone().expect("loop device");
    let trigger = Path::new("/sys/fs/ext4")
        .join(Path::new(&dev).file_name().expect("device name"))
        .join("trigger_fs_error");
    if !trigger.exists() {
        eprintln!("SKIPPED {test}: this kernel has no {}", trigger.display());
        return;
    }
    let db = disk.path("p.db");
    let mut node = start_primary(&db);
    let mut writes = Writes::default();
    for i in 0..3 {
        writes.put_ok(&mut node, &format!("a{i}"), &format!("v{i}"));
    }

    // What the kernel does after an I/O error on an `errors=remount-ro` filesystem.
    std::fs::write(&trigger, "1").expect("trigger an ext4 error");
    for i in 0..3 {
        assert!(
            !writes.put(&mut node, &format!("b{i}"), &format!("w{i}")),
            "a write to a read-only filesystem printed OK"
        );
    }
    writes.assert_refusals_say(&format!("{} cannot be written", db.display()));
    let del = node.command("DEL a0");
    assert!(
        del.starts_with("ERR write failed, nothing was stored: "),
        "{del}"
    );
    assert_get(&mut node, "a0", "v0");
    assert_get(&mut node, "a2", "v2");
    assert_eq!(node.command("GET b0"), "b0 -> Not found");
    assert_no_panic(&node);

    // An aborted ext4 journal cannot be remounted read-write in place: stop kv, unmount,
    // check the filesystem and mount it again, as an administrator would.
    node.kill();
    disk.unmount();
    let image = disk.dir.path().join("disk.img").display().to_string();
    if let Ok(status) = Command::new("e2fsck").args(["-fy", &image]).output() {
        assert!(
            status.status.code().is_some_and(|c| c < 4),
            "e2fsck could not repair the image: {status:?}"
        );
    }
    disk.mount_ext4(&[]).expect("mount the repaired filesystem");
    writes.assert_stored_in(&db);

    let mut node = start_primary(&db);
    assert_get(&mut node, "a1", "v1");
    writes.put_ok(&mut node, "c0", "after");
    writes.kill_and_check(node, &db);
}

#[test]
fn read_only_filesystem_is_refused_at_start_with_one_line_and_works_again_read_write() {
    let test = "read_only_filesystem_is_refused_at_start_with_one_line_and_works_again_read_write";
    let Some(disk) = mounted_or_skip(test, Mounted::tmpfs("8m")) else {
        return;
    };
    let db = disk.path("p.db");
    let db_arg = db.display().to_string();
    let args = ["primary", "--db", &db_arg, "--listen", "127.0.0.1:0"];
    let (code, stdout, stderr) = run_with_input(&args, b"PUT a 1\n");
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(stdout.contains("OK a = 1"), "{stdout}");

    disk.remount("ro");
    let (code, stdout, stderr) = run_with_input(&args, b"GET a\nPUT b 2\n");
    assert_ne!(code, Some(0), "kv ran on a read-only filesystem: {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stdout.contains("OK"), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    assert!(
        lines[0].starts_with(&format!("kv: {db_arg}: cannot open"))
            && lines[0].contains("read-only"),
        "unclear: {stderr}"
    );

    disk.remount("rw");
    let mut node = start_primary(&db);
    assert_eq!(node.command("GET a"), "a -> 1");
    assert_eq!(node.command("PUT b 2"), "OK b = 2");
    assert_no_panic(&node);
    node.kill();
    let rows = kv_rows(&db);
    assert_eq!(
        rows,
        [
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string())
        ]
    );
}

/// `db` and its side files.
fn db_files(db: &Path) -> [PathBuf; 3] {
    ["", "-wal", "-shm"].map(|suffix| PathBuf::from(format!("{}{suffix}", db.display())))
}

#[test]
fn removed_database_file_refuses_every_write_and_keeps_serving_reads() {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("p.db");
    let mut node = start_primary(&db);
    let mut writes = Writes::default();
    writes.put_ok(&mut node, "a", "1");
    writes.put_ok(&mut node, "b", "2");
    for file in db_files(&db) {
        std::fs::remove_file(&file).expect("rm");
    }

    for i in 0..3 {
        assert!(
            !writes.put(&mut node, &format!("c{i}"), "3"),
            "a write to a removed database printed OK"
        );
        assert_get(&mut node, "a", "1");
    }
    writes.assert_refusals_say(&format!("{} was removed or replaced", db.display()));
    let del = node.command("DEL a");
    assert!(
        del.starts_with("ERR ") && del.contains("was removed or replaced"),
        "{del}"
    );
    assert_eq!(node.command_lines("KEYS"), ["a", "b"]);
    assert_eq!(node.command("GET c0"), "c0 -> Not found");
    let status = node.command_lines("STATUS");
    assert!(status.iter().any(|l| l == "keys: 2"), "{status:?}");
    // The node keeps running read-only: still refusing, still answering.
    assert!(!writes.put(&mut node, "d", "4"));
    assert_get(&mut node, "b", "2");
    assert_no_panic(&node);
    node.send("EXIT");
    assert_eq!(node.wait_exit(), Some(0), "{}", node.stderr_text());
    assert_no_panic(&node);
}

#[test]
fn database_moved_away_or_replaced_refuses_writes_until_it_is_back() {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("p.db");
    let mut node = start_primary(&db);
    let mut writes = Writes::default();
    writes.put_ok(&mut node, "a", "1");
    let files = db_files(&db);
    let moved = ["moved.db", "moved.db-wal", "moved.db-shm"].map(|n| dir.path().join(n));
    for (from, to) in files.iter().zip(&moved) {
        std::fs::rename(from, to).expect("mv away");
    }
    assert!(!writes.put(&mut node, "b", "2"), "moved away, yet OK");

    // Another file in its place: a kv database with other contents.
    let other = dir.path().join("other.db");
    let (code, _, stderr) = run_with_input(
        &[
            "primary",
            "--db",
            &other.display().to_string(),
            "--listen",
            "127.0.0.1:0",
        ],
        b"PUT x other\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    std::fs::rename(&other, &db).expect("mv other.db p.db");
    assert!(!writes.put(&mut node, "c", "3"), "replaced, yet OK");
    assert_get(&mut node, "a", "1");
    assert_eq!(node.command("GET x"), "x -> Not found");
    writes.assert_refusals_say(&format!("{} was removed or replaced", db.display()));

    // The node's own files back where they were: writes are accepted again.
    for (from, to) in moved.iter().zip(&files) {
        std::fs::rename(from, to).expect("mv back");
    }
    writes.put_ok(&mut node, "d", "4");
    writes.kill_and_check(node, &db);
}

#[test]
fn removed_wal_file_refuses_writes_and_a_clean_exit_keeps_everything_acknowledged() {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("p.db");
    let mut node = start_primary(&db);
    let mut writes = Writes::default();
    writes.put_ok(&mut node, "a", "1");
    writes.put_ok(&mut node, "b", "2");
    let [_, wal, _] = db_files(&db);
    std::fs::remove_file(&wal).expect("rm -wal");
    // SQLite would commit into the unlinked -wal, and a crash would then lose the write.
    assert!(!writes.put(&mut node, "c", "3"), "-wal removed, yet OK");
    writes.assert_refusals_say("p.db-wal was removed or replaced");
    assert_get(&mut node, "b", "2");
    node.send("EXIT");
    assert_eq!(node.wait_exit(), Some(0), "{}", node.stderr_text());
    assert_no_panic(&node);
    // Closing checkpointed the open (unlinked) -wal into the database file.
    writes.assert_stored_in(&db);
}

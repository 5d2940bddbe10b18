//! Reading shell lines: rustyline with a history file on a terminal (Ctrl-C clears the
//! line, Ctrl-D ends), or plain lines from a pipe, read with a bounded buffer so a huge
//! or binary line cannot exhaust memory. Output goes to stdout; logs go to stderr.
//!
//! No typed line is lost: lines that arrive together (typed ahead while a command runs,
//! or pasted where the terminal has no bracketed paste) all run, in order. rustyline
//! drops what it read past the first line unless its `buffer-redux` feature is on
//! (rustyline#690), so Cargo.toml turns it on; a bracketed paste of several lines arrives
//! as one string, split here. Messages that arrive on their own (the `--join` line)
//! are printed above the prompt, not into it.

use super::command::MAX_LINE;
use super::{Outcome, Shell};
use crate::error::{Error, Result};
use rustyline::error::ReadlineError;
use rustyline::ExternalPrinter as _;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;

/// Runs the shell on stdin until `EXIT`, Ctrl-D or end of input; `announcements` are
/// lines to print as they come (between the shell's own output).
pub fn run(shell: &Shell, interactive: bool, announcements: Receiver<String>) -> Result<()> {
    if interactive {
        run_terminal(shell, announcements)
    } else {
        std::thread::spawn(move || announcements.iter().for_each(|line| println!("{line}")));
        run_lines(shell, &mut std::io::stdin().lock(), &mut std::io::stdout())
    }
}

/// Prints `announcements` above the prompt while the editor waits for a line.
fn announce_above_prompt(editor: &mut rustyline::DefaultEditor, announcements: Receiver<String>) {
    match editor.create_external_printer() {
        Ok(mut printer) => std::thread::spawn(move || {
            for line in announcements {
                // Outside a readline the printer writes as is: the newline is ours.
                if printer.print(format!("{line}\n")).is_err() {
                    println!("{line}");
                }
            }
        }),
        Err(_) => std::thread::spawn(move || announcements.iter().for_each(|l| println!("{l}"))),
    };
}

fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kv_history"))
}

fn run_terminal(shell: &Shell, announcements: Receiver<String>) -> Result<()> {
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| Error::Invalid(format!("cannot start the line editor: {e}")))?;
    announce_above_prompt(&mut editor, announcements);
    let history = history_file();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    loop {
        match editor.readline(shell.prompt()) {
            Ok(text) => {
                if !text.trim().is_empty() {
                    let _ = editor.add_history_entry(text.as_str());
                }
                // A bracketed paste of several lines arrives as one string: run each line.
                for line in text.split('\n') {
                    let outcome = match shell.execute_raw(line.as_bytes()) {
                        Outcome::Confirm { question, line } => match editor.readline(&question) {
                            Ok(answer) if is_yes(&answer) => shell.execute(&line),
                            _ => Outcome::Print("Not done.".into()),
                        },
                        other => other,
                    };
                    match outcome {
                        Outcome::Print(output) => println!("{output}"),
                        Outcome::Exit => return save_history(&mut editor, history.as_deref()),
                        Outcome::Nothing | Outcome::Confirm { .. } => {}
                    }
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Error::Invalid(format!("reading the terminal failed: {e}"))),
        }
    }
    save_history(&mut editor, history.as_deref())
}

/// Whether an answer to a `[y/N]` question is yes.
fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn save_history(
    editor: &mut rustyline::DefaultEditor,
    path: Option<&std::path::Path>,
) -> Result<()> {
    if let Some(path) = path {
        // Losing the history file is not worth failing the shell over.
        let _ = editor.save_history(path);
    }
    Ok(())
}

/// Runs the shell over lines from `input`, printing results to `output` (no prompts).
pub fn run_lines(shell: &Shell, input: &mut impl BufRead, output: &mut impl Write) -> Result<()> {
    let mut line = Vec::new();
    while let Some(length) = read_bounded_line(input, &mut line, MAX_LINE)? {
        let outcome = if length > line.len() {
            Outcome::Print(format!(
                "ERR line too long ({length} bytes; the limit is {MAX_LINE})"
            ))
        } else {
            // Read from a pipe or a file: nobody to ask, so a confirmation is given.
            match shell.execute_raw(&line) {
                Outcome::Confirm { line, .. } => shell.execute(&line),
                other => other,
            }
        };
        match outcome {
            Outcome::Print(text) => writeln!(output, "{text}")?,
            Outcome::Nothing | Outcome::Confirm { .. } => {}
            Outcome::Exit => break,
        }
        output.flush()?;
    }
    Ok(())
}

/// Reads one line (without its `\n`) into `line`, keeping at most `max + 1` bytes and
/// discarding the rest. Returns the line's full length, or `None` at end of input.
pub fn read_bounded_line(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<usize>> {
    line.clear();
    let mut length = 0;
    let mut any = false;
    loop {
        let buffer = match input.fill_buf() {
            Ok(buffer) => buffer,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buffer.is_empty() {
            return Ok(any.then_some(length));
        }
        any = true;
        let (chunk, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (&buffer[..at], Some(at + 1)),
            None => (buffer, None),
        };
        let room = (max + 1).saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        length += chunk.len();
        let used = done.unwrap_or(chunk.len());
        input.consume(used);
        if done.is_some() {
            return Ok(Some(length));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lines_keep_length_but_not_bytes() {
        let mut input = std::io::Cursor::new(b"short\nxxxxxxxxxx\nlast".to_vec());
        let mut line = Vec::new();
        assert_eq!(
            read_bounded_line(&mut input, &mut line, 4).unwrap(),
            Some(5)
        );
        assert_eq!(line.len(), 5);
        assert_eq!(
            read_bounded_line(&mut input, &mut line, 4).unwrap(),
            Some(10)
        );
        assert_eq!(line.len(), 5, "only max + 1 bytes are kept");
        assert_eq!(
            read_bounded_line(&mut input, &mut line, 4).unwrap(),
            Some(4)
        );
        assert_eq!(line, b"last");
        assert_eq!(read_bounded_line(&mut input, &mut line, 4).unwrap(), None);
    }
}

//! The probe's product: one row per WSK operation tried, printed as a table through
//! `DbgPrint`, one line per row, in a format that stays stable for the programs that read it
//! (the host runner's `probe_table` module parses it):
//!
//! ```text
//! wsk_probe: begin
//! wsk_probe: row | <operation> | <api> | <status> | <completion> | <verdict> | <note>
//! ...
//! wsk_probe: end <rows> rows, <passed> pass, <failed> fail, <skipped> skip
//! ```
//!
//! - `operation`: the WSK function (and socket kind or event) tried, `WskBind(listen)`;
//! - `api`: `safe` (the `wsk` crate) or `raw` (`wsk-sys` calls with the probe's own IRP);
//! - `status`: the `NTSTATUS` the request completed with, by WDK name or `0x%08X`; for a
//!   request that did not complete, what the WSK function returned (`raw` rows) or `-`;
//! - `completion`: `completed`, `not completed` (cancelled at the deadline and given up), or
//!   `not run` (what it needs failed before);
//! - `verdict`: `pass` (completed, succeeded, and the result checked out), `fail`, or `skip`
//!   (not run: the running system predates the operation, or a prerequisite failed);
//! - `note`: what was checked or seen, free text without `|`.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use wsk::Error;
use wsk_driver_runtime::kprint;
use wsk_sys::*;

/// Which layer carried the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// The `wsk` crate.
    Safe,
    /// `wsk-sys` alone, with the probe's own IRP and completion routine.
    Raw,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Completed with this status.
    Completed(NTSTATUS),
    /// Not completed by the deadline: cancelled, then given up. The WSK function's return
    /// value when the probe saw it (raw requests).
    NotCompleted(Option<NTSTATUS>),
    /// Not issued.
    NotRun,
}

/// The verdict of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Completed, succeeded, checked.
    Pass,
    /// Anything else that was run.
    Fail,
    /// Not run.
    Skip,
}

/// One row of the table.
#[derive(Debug)]
pub struct Row {
    operation: &'static str,
    api: Api,
    completion: Completion,
    verdict: Verdict,
    note: String,
}

/// The table being filled.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Row>,
}

/// The text of a status: its WDK name when known, else hexadecimal.
fn status_text(status: NTSTATUS) -> String {
    let mut text = String::new();
    match Error::from_status(status).status_name() {
        Some(name) => text.push_str(name),
        None if status == STATUS_SUCCESS => text.push_str("STATUS_SUCCESS"),
        None if status == STATUS_PENDING => text.push_str("STATUS_PENDING"),
        None => {
            let _ = write!(text, "{:#010X}", status as u32);
        }
    }
    text
}

/// A note made safe for the table: no `|` or line break, at most 120 bytes.
fn clean(note: &str) -> String {
    let mut out = String::new();
    for c in note.chars() {
        if out.len() >= 120 {
            out.push_str("...");
            break;
        }
        out.push(match c {
            '|' => '/',
            '\r' | '\n' | '\t' => ' ',
            c => c,
        });
    }
    out
}

impl Table {
    /// Adds a row whose verdict follows from the completion: `pass` when it completed with
    /// success and no `problem` was found, `skip` when it was not run for no problem of the
    /// provider's, else `fail`.
    pub fn add(
        &mut self,
        operation: &'static str,
        api: Api,
        completion: Completion,
        problem: Option<&str>,
        note: &str,
    ) {
        let verdict = match completion {
            Completion::Completed(status) if NT_SUCCESS(status) && problem.is_none() => {
                Verdict::Pass
            }
            Completion::NotRun if problem.is_none() => Verdict::Skip,
            _ => Verdict::Fail,
        };
        let note = match problem {
            Some(problem) if note.is_empty() => clean(problem),
            Some(problem) => {
                let mut text = clean(problem);
                text.push_str("; ");
                text.push_str(&clean(note));
                text
            }
            None => clean(note),
        };
        self.rows.push(Row {
            operation,
            api,
            completion,
            verdict,
            note,
        });
    }

    /// Adds a row for an operation not run, saying why.
    pub fn skip(&mut self, operation: &'static str, api: Api, why: &str) {
        self.add(operation, api, Completion::NotRun, None, why);
    }

    /// Whether a row for `operation` was added.
    #[must_use]
    pub fn has(&self, operation: &str) -> bool {
        self.rows.iter().any(|r| r.operation == operation)
    }

    /// Whether every row passed (none failed; skipped rows do not count against it).
    #[must_use]
    pub fn all_passed(&self) -> bool {
        self.rows.iter().all(|r| r.verdict != Verdict::Fail)
    }

    /// Prints the table, one `DbgPrint` line per row. Any IRQL.
    pub fn print(&self) {
        kprint!("wsk_probe: begin\n");
        for row in &self.rows {
            let api = match row.api {
                Api::Safe => "safe",
                Api::Raw => "raw",
            };
            let (status, completion) = match row.completion {
                Completion::Completed(status) => (status_text(status), "completed"),
                Completion::NotCompleted(Some(returned)) => {
                    (status_text(returned), "not completed")
                }
                Completion::NotCompleted(None) => (String::from("-"), "not completed"),
                Completion::NotRun => (String::from("-"), "not run"),
            };
            let verdict = match row.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "fail",
                Verdict::Skip => "skip",
            };
            kprint!(
                "wsk_probe: row | {} | {api} | {status} | {completion} | {verdict} | {}\n",
                row.operation,
                row.note
            );
        }
        let count = |v: Verdict| self.rows.iter().filter(|r| r.verdict == v).count();
        kprint!(
            "wsk_probe: end {} rows, {} pass, {} fail, {} skip\n",
            self.rows.len(),
            count(Verdict::Pass),
            count(Verdict::Fail),
            count(Verdict::Skip)
        );
    }
}

//! The table `wsk_probe.sys` prints, parsed: one [`Row`] per `wsk_probe: row | ...` line,
//! and the counts of its `wsk_probe: end ...` line to check that none was lost.
//!
//! The module uses nothing but `std`, so that a program that does not link the host runner
//! (a step that runs the image under another kernel and reads its debug output) can include
//! it as a source file (`#[path = ".../probe_table.rs"] mod probe_table;`). Lines may carry
//! a prefix before `wsk_probe:` (a debugger's or a logger's) and a quoted, escaped
//! line end after the last column (`...\n"`); both are ignored.

use std::fmt;

/// The prefix of every line of the table.
pub const PREFIX: &str = "wsk_probe: ";

/// Which layer made the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// The `wsk` crate.
    Safe,
    /// `wsk-sys` alone.
    Raw,
}

/// How the request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// It completed (with the row's status).
    Completed,
    /// It did not complete by the deadline: cancelled, then given up.
    NotCompleted,
    /// It was not issued.
    NotRun,
}

/// The row's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Completed, succeeded, and its result checked out.
    Pass,
    /// Run, and not a pass.
    Fail,
    /// Not run (the system lacks the operation, or what it needs failed).
    Skip,
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The WSK operation (`WskBind(listen)`, `event receive`, `raw WskSocketConnect`).
    pub operation: String,
    /// The layer that made the request.
    pub api: Api,
    /// The status: a WDK name (`STATUS_SUCCESS`), `0x%08X`, or `-` when none is known.
    pub status: String,
    /// How it ended.
    pub completion: Completion,
    /// The verdict.
    pub verdict: Verdict,
    /// What was checked or seen.
    pub note: String,
}

/// A parsed table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// The rows, in the order printed.
    pub rows: Vec<Row>,
}

/// What is wrong with a table's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "probe table: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

/// The text of a line from `wsk_probe: ` on, with a trailing quoted escaped line end removed.
fn content(line: &str) -> Option<&str> {
    let start = line.find(PREFIX)?;
    let text = line[start + PREFIX.len()..].trim_end();
    let text = text.strip_suffix('"').unwrap_or(text);
    let text = text.strip_suffix("\\n").unwrap_or(text);
    Some(text.trim_end())
}

fn parse_row(fields: &str) -> Result<Row, ParseError> {
    let columns: Vec<&str> = fields.split('|').map(str::trim).collect();
    let [operation, api, status, completion, verdict, note] = columns[..] else {
        return Err(ParseError(format!(
            "a row has {} columns, not 6: `{fields}`",
            columns.len()
        )));
    };
    let bad =
        |what: &str, value: &str| ParseError(format!("unknown {what} `{value}` in `{fields}`"));
    Ok(Row {
        operation: operation.to_string(),
        api: match api {
            "safe" => Api::Safe,
            "raw" => Api::Raw,
            other => return Err(bad("api", other)),
        },
        status: status.to_string(),
        completion: match completion {
            "completed" => Completion::Completed,
            "not completed" => Completion::NotCompleted,
            "not run" => Completion::NotRun,
            other => return Err(bad("completion", other)),
        },
        verdict: match verdict {
            "pass" => Verdict::Pass,
            "fail" => Verdict::Fail,
            "skip" => Verdict::Skip,
            other => return Err(bad("verdict", other)),
        },
        note: note.to_string(),
    })
}

/// Reads `N rows, P pass, F fail, S skip`.
fn parse_counts(text: &str) -> Result<[usize; 4], ParseError> {
    let bad = || ParseError(format!("malformed end line `{text}`"));
    let mut counts = [0usize; 4];
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let names = ["rows", "pass", "fail", "skip"];
    if parts.len() != names.len() {
        return Err(bad());
    }
    for (i, (part, name)) in parts.iter().zip(names).enumerate() {
        let (number, label) = part.split_once(' ').ok_or_else(bad)?;
        if label != name {
            return Err(bad());
        }
        counts[i] = number.parse().map_err(|_| bad())?;
    }
    Ok(counts)
}

impl Table {
    /// Parses the last complete table in `output` (every line between the last
    /// `wsk_probe: begin` and the `wsk_probe: end ...` after it; other lines are ignored),
    /// and checks its rows against the counts of the end line.
    ///
    /// # Errors
    /// No complete table, a malformed row, or counts that do not match the rows.
    pub fn parse(output: &str) -> Result<Table, ParseError> {
        let mut current: Option<Vec<Row>> = None;
        let mut last: Option<Table> = None;
        for line in output.lines() {
            let Some(text) = content(line) else {
                continue;
            };
            if text == "begin" {
                current = Some(Vec::new());
            } else if let Some(fields) = text.strip_prefix("row |") {
                if let Some(rows) = current.as_mut() {
                    rows.push(parse_row(fields)?);
                }
            } else if let Some(counts) = text.strip_prefix("end ") {
                let Some(rows) = current.take() else {
                    continue;
                };
                let table = Table { rows };
                let [total, pass, fail, skip] = parse_counts(counts)?;
                let found = [
                    table.rows.len(),
                    table.count(Verdict::Pass),
                    table.count(Verdict::Fail),
                    table.count(Verdict::Skip),
                ];
                if found != [total, pass, fail, skip] {
                    return Err(ParseError(format!(
                        "the end line counts {total} rows ({pass} pass, {fail} fail, {skip} \
                         skip); the table has {} ({} pass, {} fail, {} skip)",
                        found[0], found[1], found[2], found[3]
                    )));
                }
                last = Some(table);
            }
        }
        last.ok_or_else(|| ParseError("no complete table (begin ... end) in the output".into()))
    }

    /// The row of `operation`, if there is one.
    #[must_use]
    pub fn row(&self, operation: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.operation == operation)
    }

    /// Number of rows with `verdict`.
    #[must_use]
    pub fn count(&self, verdict: Verdict) -> usize {
        self.rows.iter().filter(|r| r.verdict == verdict).count()
    }

    /// The rows that did not pass.
    #[must_use]
    pub fn not_passed(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.verdict != Verdict::Pass)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
noise\n\
wsk_probe: begin\n\
wsk_probe: row | WskBind(listen) | safe | STATUS_SUCCESS | completed | pass | 127.0.0.1:0\n\
0024:warn:debugstr:DbgPrint \"wsk_probe: row | raw WskSocketConnect | raw | STATUS_NOT_IMPLEMENTED | not completed | fail | given up\\n\"\n\
wsk_probe: row | WskSocket(stream) | safe | - | not run | skip | old system\n\
wsk_probe: end 3 rows, 1 pass, 1 fail, 1 skip\n";

    #[test]
    fn rows_parse_with_and_without_a_logger_prefix() {
        let table = Table::parse(TABLE).unwrap();
        assert_eq!(table.rows.len(), 3);
        let raw = table.row("raw WskSocketConnect").unwrap();
        assert_eq!(raw.api, Api::Raw);
        assert_eq!(raw.status, "STATUS_NOT_IMPLEMENTED");
        assert_eq!(raw.completion, Completion::NotCompleted);
        assert_eq!(raw.verdict, Verdict::Fail);
        assert_eq!(raw.note, "given up");
        assert_eq!(table.row("WskBind(listen)").unwrap().note, "127.0.0.1:0");
        assert_eq!(table.not_passed().len(), 2);
    }

    #[test]
    fn a_lost_row_or_a_missing_end_is_an_error() {
        let lost = TABLE.replace(
            "wsk_probe: row | WskSocket(stream) | safe | - | not run | skip | old system\n",
            "",
        );
        assert!(Table::parse(&lost).is_err());
        let unfinished = TABLE.replace("wsk_probe: end 3 rows, 1 pass, 1 fail, 1 skip\n", "");
        assert!(Table::parse(&unfinished).is_err());
        let bad = TABLE.replace("| pass |", "| maybe |");
        assert!(Table::parse(&bad).is_err());
    }
}

//! `wsk_probe.sys` under Wine: its conformance table of Wine's WSK provider, compared with the
//! committed one (`wsk-examples/wsk-probe/WINE.md`).
//!
//! [`run`] runs the probe under Wine ([`crate::wine::run_image`]) with its sockets on a free
//! range of loopback ports (`ListenPort`: Wine has no `WskGetLocalAddress`), a short
//! `DeadlineMs` (each request Wine never completes costs it, then half a second more for the
//! raw ones) and `Unimplemented` naming the kernel routines Wine exports as stubs that end the
//! driver host; it parses the table (`probe_table.rs`, the host runner's parser, included as a
//! source file). [`differences`] compares two tables row by row on what a provider decides —
//! status, completion, verdict, and which rows there are — not on the notes (ports,
//! timings). The test suite's Wine step fails on any difference and prints both sides of each
//! differing row; `cargo xtask wine --probe` prints the table and the differences, and
//! `--update` rewrites the committed table from the run.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use crate::wine::{Ending, Hold, Parameter, Run, Wine, release_image, run_image};
use crate::{Result, workspace_root};

#[path = "../../wsk-examples/host-runner/src/probe_table.rs"]
#[allow(dead_code)]
mod probe_table;

pub use probe_table::{Api, Completion, Row, Table, Verdict};

/// Each request's deadline: long enough for a loopback request on a loaded 2-core machine,
/// short because the requests Wine never completes each wait it out.
const DEADLINE_MS: u32 = 400;

/// Kernel routines Wine 8.0 exports as stubs that end the driver host when called (so
/// `MmGetSystemRoutineAddress` finds them): the probe skips the rows that would call one.
const UNIMPLEMENTED: &str = "IoBuildPartialMdl";

/// Loopback ports the probe binds from `ListenPort` on (`ListenPort` … `ListenPort + 8`).
const PORTS: u16 = 9;

/// The committed table of Wine's provider.
pub fn expectation_path() -> PathBuf {
    workspace_root()
        .join("wsk-examples")
        .join("wsk-probe")
        .join("WINE.md")
}

/// A base port with `PORTS` free loopback ports from it, at most 65 000 (the probe's limit).
fn free_range() -> Result<u16> {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0")?;
        let base = first.local_addr()?.port();
        if base > 65_000 {
            continue;
        }
        let rest: std::io::Result<Vec<TcpListener>> = (1..PORTS)
            .map(|offset| TcpListener::bind(("127.0.0.1", base + offset)))
            .collect();
        if rest.is_ok() {
            return Ok(base);
        }
    }
    Err(format!("no {PORTS} consecutive free loopback ports found").into())
}

/// What a probe run gave: the run, the table's lines as printed, and the table.
pub struct ProbeRun {
    /// The run (output, ending, timings).
    pub run: Run,
    /// The lines from `wsk_probe: begin` to `wsk_probe: end ...`, as the driver printed them.
    pub lines: Vec<String>,
    /// The parsed table, or why there is none.
    pub table: Result<Table, String>,
}

/// Runs `wsk_probe.sys` under Wine (built when needed) and parses its table.
pub fn run(wine: &Wine) -> Result<ProbeRun> {
    let (sys, service) = release_image("wsk-probe")?;
    let base = free_range()?;
    let (run, _) = run_image(
        wine,
        &sys,
        &service,
        &[
            Parameter::new("ListenPort", base),
            Parameter::new("DeadlineMs", DEADLINE_MS),
            Parameter::new("Unimplemented", UNIMPLEMENTED),
        ],
        // The table is printed by DriverEntry: it is whole once the service runs.
        Hold::For(Duration::ZERO),
        false,
    )?;
    let lines = table_lines(&run.output);
    let table = Table::parse(&run.output.join("\n")).map_err(|e| e.to_string());
    Ok(ProbeRun { run, lines, table })
}

/// The last `begin` … `end` block of the driver's lines.
fn table_lines(output: &[String]) -> Vec<String> {
    let begin = output
        .iter()
        .rposition(|line| line.trim_end() == "wsk_probe: begin");
    let Some(begin) = begin else {
        return Vec::new();
    };
    let Some(end) = output[begin..]
        .iter()
        .position(|line| line.starts_with("wsk_probe: end "))
    else {
        return Vec::new();
    };
    output[begin..=begin + end]
        .iter()
        .map(|line| line.trim_end().to_string())
        .collect()
}

/// The committed table.
pub fn expected() -> Result<Table> {
    let path = expectation_path();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Table::parse(&text).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// A row as the probe prints it (without the prefix).
pub fn format_row(row: &Row) -> String {
    let api = match row.api {
        Api::Safe => "safe",
        Api::Raw => "raw",
    };
    let completion = match row.completion {
        Completion::Completed => "completed",
        Completion::NotCompleted => "not completed",
        Completion::NotRun => "not run",
    };
    let verdict = match row.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Skip => "skip",
    };
    format!(
        "{} | {api} | {} | {completion} | {verdict} | {}",
        row.operation, row.status, row.note
    )
}

/// What a provider decides of a row: its layer, status, completion and verdict (not its
/// note).
fn decided(row: &Row) -> (Api, &str, Completion, Verdict) {
    (row.api, row.status.as_str(), row.completion, row.verdict)
}

/// The differences between the committed table and a run's, one entry per differing
/// operation: both rows (or the one there is), ready to print. Empty when they agree.
pub fn differences(expected: &Table, got: &Table) -> Vec<String> {
    let mut found = Vec::new();
    for row in &expected.rows {
        match got.row(&row.operation) {
            None => found.push(format!(
                "{}: missing from the run\n      expected: {}",
                row.operation,
                format_row(row)
            )),
            Some(now) if decided(now) != decided(row) => found.push(format!(
                "{}: changed\n      expected: {}\n      got:      {}",
                row.operation,
                format_row(row),
                format_row(now)
            )),
            Some(_) => {}
        }
    }
    for row in &got.rows {
        if expected.row(&row.operation).is_none() {
            found.push(format!(
                "{}: new in the run\n      got:      {}",
                row.operation,
                format_row(row)
            ));
        }
    }
    found
}

/// `WINE.md`'s text for a run's table lines.
fn expectation_text(lines: &[String], wine_version: &str) -> String {
    let mut text = String::from(
        "# `wsk_probe.sys` under Wine\n\n\
         The conformance table of Wine's WSK provider (`netio.sys`) and kernel, as the probe \
         printed it under ",
    );
    text.push_str(wine_version);
    text.push_str(" with `DeadlineMs` ");
    let _ = write!(text, "{DEADLINE_MS}");
    text.push_str(", `ListenPort` a free range and `Unimplemented` ");
    let _ = write!(text, "`{UNIMPLEMENTED}`");
    text.push_str(
        ". The test suite's Wine step runs the probe and fails when a row's status, \
         completion or verdict differs from this table, or a row appears or goes (the notes \
         are not compared: ports and timings vary). `cargo xtask wine --probe` prints a run's \
         table and its differences; `cargo xtask wine --probe --update` rewrites this file \
         from a run. See `wsk-examples/README.md` for the columns and the root README's \
         \"Running under Wine\" for what the failing rows mean.\n\n```text\n",
    );
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str("```\n");
    text
}

/// The test suite's check: a run's table against the committed one. `Ok` says what agreed.
pub fn check(probe: &ProbeRun) -> Result<String> {
    if !probe.run.running {
        return Err("the probe did not reach RUNNING".into());
    }
    let table = probe.table.as_ref().map_err(|e| e.clone())?;
    let expected = expected()?;
    let differences = differences(&expected, table);
    if probe.run.ending != Ending::Stopped {
        return Err(format!("the probe's stop: {}", probe.run.ending).into());
    }
    if !differences.is_empty() {
        return Err(format!(
            "the probe's table differs from {} in {} row(s) (a change in Wine's provider, \
             the probe or wsk; `cargo xtask wine --probe --update` records a new table):\n    {}",
            expectation_path().display(),
            differences.len(),
            differences.join("\n    ")
        )
        .into());
    }
    Ok(format!(
        "{} rows as committed ({} pass, {} fail, {} skip)",
        table.rows.len(),
        table.count(Verdict::Pass),
        table.count(Verdict::Fail),
        table.count(Verdict::Skip)
    ))
}

/// `cargo xtask wine --probe [--update]`.
pub fn command(args: &[String]) -> Result<()> {
    let mut update = false;
    for arg in args {
        match arg.as_str() {
            "--update" => update = true,
            other => return Err(format!("wine --probe: unexpected argument `{other}`").into()),
        }
    }
    let wine = Wine::find()?;
    if let Some(took) = wine.ensure_prefix()? {
        eprintln!("xtask: Wine prefix created in {took:.1?}");
    }
    let probe = run(&wine)?;
    eprintln!(
        "xtask: wsk_probe: running after {:.1?}; {} ({:.1?} in all)",
        probe.run.start_time, probe.run.ending, probe.run.total_time
    );
    let table = match &probe.table {
        Ok(table) => table,
        Err(error) => {
            return Err(format!(
                "the probe printed no whole table ({error}); its output:\n{}",
                probe.run.output_text()
            )
            .into());
        }
    };
    for line in &probe.lines {
        println!("{line}");
    }
    if update {
        let path = expectation_path();
        let version = wine
            .version()
            .map_or_else(|| "Wine".to_string(), |v| format!("Wine ({v})"));
        std::fs::write(&path, expectation_text(&probe.lines, &version))?;
        eprintln!("xtask: wrote {}", path.display());
        return Ok(());
    }
    let differences = differences(&expected()?, table);
    if differences.is_empty() {
        eprintln!(
            "xtask: the table is the committed one ({})",
            expectation_path().display()
        );
        Ok(())
    } else {
        Err(format!(
            "{} row(s) differ from {}:\n    {}",
            differences.len(),
            expectation_path().display(),
            differences.join("\n    ")
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
wsk_probe: begin\n\
wsk_probe: row | WskBind(listen) | safe | STATUS_SUCCESS | completed | pass | 127.0.0.1:5000\n\
wsk_probe: row | WskDisconnect | safe | - | not completed | fail | cancelled after 400 ms\n\
wsk_probe: end 2 rows, 1 pass, 1 fail, 0 skip\n";

    #[test]
    fn notes_do_not_count_and_decisions_do() {
        let expected = Table::parse(TABLE).unwrap();
        let other_port = Table::parse(&TABLE.replace(":5000", ":6000")).unwrap();
        assert!(differences(&expected, &other_port).is_empty());
        let completed = Table::parse(
            &TABLE
                .replace(
                    "| - | not completed | fail |",
                    "| STATUS_SUCCESS | completed | pass |",
                )
                .replace("1 pass, 1 fail", "2 pass, 0 fail"),
        )
        .unwrap();
        let found = differences(&expected, &completed);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("WskDisconnect: changed"));
        assert!(found[0].contains("expected: WskDisconnect | safe | - | not completed | fail"));
        assert!(found[0].contains("got:      WskDisconnect | safe | STATUS_SUCCESS | completed"));
    }

    #[test]
    fn a_row_gone_or_new_is_a_difference() {
        let expected = Table::parse(TABLE).unwrap();
        let mut fewer = expected.clone();
        let gone = fewer.rows.pop().unwrap();
        let found = differences(&expected, &fewer);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("missing from the run"));
        let found = differences(&fewer, &expected);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with(&format!("{}: new in the run", gone.operation)));
    }

    #[test]
    fn the_committed_table_parses() {
        let table = expected().unwrap();
        assert!(!table.rows.is_empty());
    }
}

//! `tessera user add --password-hash` and `tessera user import`: users from another system.

use std::io::{BufRead, Read};

use super::CliError;
use crate::app;
use crate::auth::import::{ImportLine, ImportReport, NumberedLine};
use crate::auth::Caller;
use crate::config::Settings;
use crate::store::OnConflict;

/// Longest line `user import` reads, in bytes.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// `--on-conflict`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Conflict {
    Skip,
    Fail,
}

impl From<Conflict> for OnConflict {
    fn from(c: Conflict) -> Self {
        match c {
            Conflict::Skip => OnConflict::Skip,
            Conflict::Fail => OnConflict::Fail,
        }
    }
}

pub(super) async fn add_with_hash(
    settings: Settings,
    username: &str,
    hash: &str,
    roles: Vec<String>,
    email: Option<String>,
) -> Result<(), CliError> {
    let hash = if hash == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s.trim().to_string()
    } else {
        hash.to_string()
    };
    let password_hash = match serde_json::from_str(&hash) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => serde_json::Value::String(hash),
    };
    let line = ImportLine {
        username: username.to_string(),
        password_hash,
        roles,
        claims: Default::default(),
        disabled: false,
        email,
        email_verified: false,
    };
    let auth = app::services(settings).await?.auth;
    let report = auth
        .import_users([(1, Ok(line))], false, OnConflict::Fail, &Caller::default())
        .await?;
    if let Some(e) = report.invalid.first() {
        return Err(CliError::Usage(format!("invalid request: {}", e.reason)));
    }
    if !report.existing.is_empty() {
        return Err(CliError::Usage("conflict: username".into()));
    }
    println!("created user {} with an imported password hash", username);
    Ok(())
}

pub(super) async fn import(
    settings: Settings,
    file: &std::path::Path,
    skip_invalid: bool,
    on_conflict: Conflict,
) -> Result<(), CliError> {
    let input: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
        Box::new(std::io::BufReader::new(f))
    };
    let lines =
        read_lines(input).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
    let auth = app::services(settings).await?.auth;
    let report = auth
        .import_users(lines, skip_invalid, on_conflict.into(), &Caller::default())
        .await?;
    print_report(&report);
    if report.applied {
        Ok(())
    } else if !report.existing.is_empty() {
        Err(CliError::Usage(format!(
            "nothing imported: {} username(s) exist already (--on-conflict skip leaves them alone)",
            report.existing.len()
        )))
    } else {
        Err(CliError::Usage(format!(
            "nothing imported: {} invalid line(s) (--skip-invalid imports the rest)",
            report.invalid.len()
        )))
    }
}

/// Numbered, parsed lines; blank lines are skipped, over-long ones refused.
fn read_lines(mut input: Box<dyn BufRead>) -> Result<Vec<NumberedLine>, CliError> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        buf.clear();
        let read = (&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if read == 0 {
            return Ok(out);
        }
        n += 1;
        if buf.len() > MAX_LINE_BYTES && !buf.ends_with(b"\n") {
            out.push((n, Err(format!("line longer than {MAX_LINE_BYTES} bytes"))));
            // Skip the rest of the line.
            let mut rest = Vec::new();
            input.read_until(b'\n', &mut rest)?;
            continue;
        }
        if n == 1 && buf.starts_with(b"\xEF\xBB\xBF") {
            // A UTF-8 byte order mark, as some editors write.
            buf.drain(..3);
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = serde_json::from_slice::<ImportLine>(&buf).map_err(|e| {
            // Only messages that name fields are passed on; "invalid type" and "invalid value"
            // messages quote the value, which may be a hash.
            let text = e.to_string();
            let text = text.split(" at line").next().unwrap_or("");
            if text.starts_with("unknown field") || text.starts_with("missing field") {
                format!("not an import line: {text}")
            } else if e.is_data() {
                format!(
                    "not an import line: a field has the wrong type (column {})",
                    e.column()
                )
            } else {
                format!("not JSON (column {})", e.column())
            }
        });
        out.push((n, parsed));
    }
}

fn print_report(r: &ImportReport) {
    for e in &r.invalid {
        eprintln!("line {}: {}", e.line, e.reason);
    }
    for name in &r.existing {
        eprintln!("exists already: {name}");
    }
    if r.applied {
        println!(
            "imported {} user(s); {} existing left alone; {} invalid line(s) skipped",
            r.created,
            r.existing.len(),
            r.invalid.len()
        );
    }
}

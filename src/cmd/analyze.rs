//! `analyze`: the built-in questions, or the user's own SQL, about one run.

use std::io::Write;

use anyhow::{Context, Result, bail};

use crate::analytics::{self, Format, QUERIES, Session};
use crate::cli::AnalyzeArgs;
use crate::support::parallel;
use crate::workspace::Workspace;

pub(super) fn run(ws: &Workspace, json: bool, args: AnalyzeArgs) -> Result<u8> {
    let session = Session::open(ws, args.run_id.as_deref(), parallel::threads())?;
    let tables = match args.query.as_deref() {
        None => QUERIES
            .iter()
            .map(|q| session.builtin(*q))
            .collect::<Result<Vec<_>>>()?,
        Some(q) => vec![user_or_builtin(&session, q)?],
    };
    let format = args
        .format
        .unwrap_or(if json { Format::Json } else { Format::Table });
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(analytics::render(&tables, format).as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing the results")?;
    Ok(0)
}

/// `--query`: a built-in question by name, else the path of a user's `.sql` file.
fn user_or_builtin(session: &Session, query: &str) -> Result<analytics::Table> {
    if let Some(q) = analytics::builtin(query) {
        return session.builtin(q);
    }
    let path = std::path::Path::new(query);
    if !path.is_file() {
        let names: Vec<&str> = QUERIES.iter().map(|q| q.name).collect();
        bail!(
            "--query {query:?} is neither a built-in query ({}) nor a .sql file",
            names.join(", ")
        );
    }
    let sql = std::fs::read_to_string(path)
        .with_context(|| format!("reading query file {}", path.display()))?;
    let name = path
        .file_stem()
        .map_or_else(|| query.to_string(), |s| s.to_string_lossy().into_owned());
    session
        .query_user(&name, &sql)
        .with_context(|| format!("in query file {}", path.display()))
}

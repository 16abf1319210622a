//! Integration tests: the real `sentinel` binary, each test in its own work directory.

mod analyze;
mod chaos;
mod config;
mod generate;
mod oracle;
mod recover;
mod sanitize;
mod util;

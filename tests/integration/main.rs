//! Integration tests: the real `sentinel` binary, each test in its own work directory.

mod analyze;
mod chaos;
mod config;
mod faults;
mod generate;
mod oracle;
mod recover;
mod report;
mod sanitize;
mod util;

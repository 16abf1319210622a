//! Integration tests: the real `sentinel` binary, each test in its own work directory.

mod adversarial;
mod analyze;
mod chaos;
mod config;
mod faults;
mod generate;
mod hostile;
mod oracle;
mod packaging;
mod recover;
mod report;
mod sanitize;
mod shard;
mod util;
mod views;

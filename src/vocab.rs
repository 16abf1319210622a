//! The domain's words, each with its text form in one place: reason codes (SPEC section 4, in
//! priority order), device states (section 5, in rule order), recovery actions, rollout gate
//! decisions (section 8), OTA statuses and error codes (section 3). Every stage, query parameter,
//! chart and summary spells them through these types; the text is what files and tables hold.

use polars::prelude::{Expr, lit};

/// Declares a closed vocabulary: the enum, `ALL` (in the contract's order), the text of each
/// value, and its polars literal.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// Every value, in the contract's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text form, as files and tables hold it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The text form as a polars literal.
            pub fn lit(self) -> Expr {
                lit(self.as_str())
            }

            /// The value whose text form is `text`, exactly.
            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// Why a row is quarantined, in priority order: `primary_reason` is the first that applies.
    Reason {
        MissingRequired = "MISSING_REQUIRED",
        TypeMismatch = "TYPE_MISMATCH",
        OutOfRange = "OUT_OF_RANGE",
        UnknownCategory = "UNKNOWN_CATEGORY",
        BadTimestamp = "BAD_TIMESTAMP",
        SignalDrop = "SIGNAL_DROP",
        Inconsistent = "INCONSISTENT",
        Conflict = "CONFLICT",
        Duplicate = "DUPLICATE",
    }
}

vocabulary! {
    /// A device's state, in the order its rules are tried (SPEC section 5).
    State {
        Bricked = "BRICKED",
        Unreachable = "UNREACHABLE",
        Healthy = "HEALTHY",
        RolledBack = "ROLLED_BACK",
        Partial = "PARTIAL",
        Stalled = "STALLED",
        Updating = "UPDATING",
    }
}

impl State {
    /// The states that count as failures (silence included).
    pub const FAILED: [State; 5] = [
        State::Bricked,
        State::Unreachable,
        State::RolledBack,
        State::Partial,
        State::Stalled,
    ];
}

vocabulary! {
    /// What to do about a device, in the order of the configuration's costs.
    Action {
        None = "NONE",
        Wait = "WAIT",
        RetryOta = "RETRY_OTA",
        Defer = "DEFER",
        RemoteRollback = "REMOTE_ROLLBACK",
        Escalate = "ESCALATE",
        FieldService = "FIELD_SERVICE",
        Rma = "RMA",
    }
}

impl Action {
    /// The actions done remotely: each avoids a truck roll.
    pub const REMOTE: [Action; 3] = [Action::RetryOta, Action::Defer, Action::RemoteRollback];
}

vocabulary! {
    /// The rollout gate's decision for a region (SPEC section 8).
    Decision {
        Proceed = "PROCEED",
        Watch = "WATCH",
        Halt = "HALT",
    }
}

/// The regions the gate halts, in the order given: the one rule every command and report uses.
pub fn halted_regions<'a>(decisions: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    decisions
        .into_iter()
        .filter(|(_, d)| Decision::parse(d) == Some(Decision::Halt))
        .map(|(region, _)| region.to_string())
        .collect()
}

vocabulary! {
    /// A report's OTA status (SPEC section 3).
    OtaStatus {
        Queued = "queued",
        Downloading = "downloading",
        Installing = "installing",
        Succeeded = "succeeded",
        Failed = "failed",
        RolledBack = "rolled_back",
        TimedOut = "timed_out",
    }
}

vocabulary! {
    /// A report's error code (SPEC section 3).
    ErrorCode {
        DownloadTimeout = "E_DOWNLOAD_TIMEOUT",
        ChecksumMismatch = "E_CHECKSUM_MISMATCH",
        SignatureInvalid = "E_SIGNATURE_INVALID",
        InsufficientStorage = "E_INSUFFICIENT_STORAGE",
        FlashWrite = "E_FLASH_WRITE",
        PowerLoss = "E_POWER_LOSS",
        BootLoop = "E_BOOT_LOOP",
    }
}

/// The text forms of `values`, in order.
pub fn texts<T: Copy>(values: &[T], text: fn(T) -> &'static str) -> Vec<&'static str> {
    values.iter().map(|v| text(*v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
        }
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(*s));
        }
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(*a));
        }
        assert_eq!(Reason::ALL.len(), 9);
        assert_eq!(Reason::ALL[0], Reason::MissingRequired);
        assert_eq!(Reason::ALL[8], Reason::Duplicate);
        assert_eq!(OtaStatus::parse("rolled_back"), Some(OtaStatus::RolledBack));
        assert_eq!(ErrorCode::parse("E_BOOT_LOOP"), Some(ErrorCode::BootLoop));
    }

    #[test]
    fn halt_is_decided_in_one_place() {
        let gate = [
            ("eu", "PROCEED"),
            ("ap", "HALT"),
            ("us", "WATCH"),
            ("af", "HALT"),
        ];
        assert_eq!(halted_regions(gate), vec!["ap", "af"]);
        assert!(halted_regions([("eu", "halt")]).is_empty());
    }
}

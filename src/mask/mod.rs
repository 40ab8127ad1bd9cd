//! Masking (SPEC "Masking"): what gets hidden in result rows and rejected in pushes.
//!
//! [`detectors`] finds secrets in bytes; it is shared by the git push gateway (rule
//! `git.secrets`, over new blobs) and by result masking (rule `mask.secrets`, over column
//! values). [`pii`] finds emails and card numbers in values; [`strategy`] rewrites a value
//! as a mask rule says. None of them knows why a value is masked.

pub mod detectors;
pub mod pii;
pub mod strategy;

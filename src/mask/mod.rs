//! Masking (SPEC "Masking"): what gets hidden in result rows and rejected in pushes.
//!
//! [`detectors`] finds secrets in bytes; it is shared by the git push gateway (rule
//! `git.secrets`, over new blobs) and by result masking (rule `mask.secrets`, over column
//! values). It is told what to scan, never why.

pub mod detectors;

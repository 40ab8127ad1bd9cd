//! Capability names and the names that ride on the advertisement, used everywhere the
//! gateway reads or writes them.

/// The service name in URLs and the advertisement header.
pub const SERVICE: &str = "git-receive-pack";

pub const CAP_REPORT_STATUS: &str = "report-status";
pub const CAP_REPORT_STATUS_V2: &str = "report-status-v2";
pub const CAP_SIDE_BAND: &str = "side-band";
pub const CAP_SIDE_BAND_64K: &str = "side-band-64k";
pub const CAP_PUSH_OPTIONS: &str = "push-options";
pub const CAP_PUSH_CERT: &str = "push-cert";
pub const CAP_ATOMIC: &str = "atomic";
pub const CAP_QUIET: &str = "quiet";
pub const CAP_DELETE_REFS: &str = "delete-refs";
pub const CAP_OBJECT_FORMAT: &str = "object-format";
pub const CAP_AGENT: &str = "agent";

/// The name an empty repository advertises its capabilities under.
pub const EMPTY_REPO_REF: &str = "capabilities^{}";
/// The name of an advertised extra object the server has (from alternates), not a ref.
pub const HAVE_REF: &str = ".have";

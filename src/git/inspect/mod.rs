//! What a push adds, as facts: [`pack`] indexes the pushed pack into a quarantine beside
//! the mirror (thin packs resolved against it), [`history`] walks the new commits, diffs
//! their trees and scans the blobs they add, and [`facts`] holds the `ref.*` and `push.*`
//! values rules read. No network, no policy.

pub mod facts;
pub mod history;
pub mod pack;

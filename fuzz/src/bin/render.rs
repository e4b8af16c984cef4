//! AFL++ target: realistic manifest templates rendered with fuzzed values
//! (see `fuzz/harness.rs` for the input format and the invariants).

#[path = "../../harness.rs"]
mod harness;

fn main() {
    // Parse the templates before the fork server starts, not in every child.
    harness::templates();
    afl::fuzz!(|data: &[u8]| {
        harness::render(data);
    });
}

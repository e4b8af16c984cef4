//! AFL++ target: `Template::parse` on arbitrary text and `catalog::build` on
//! an arbitrary config.json (see `fuzz/harness.rs` for the input format).

#[path = "../../harness.rs"]
mod harness;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        harness::config(data);
    });
}

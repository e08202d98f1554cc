//! scripts/windows/setup.sh's check that Rust exes start in the test Wine prefix: std's
//! `RandomState` draws its keys from `ProcessPrng` (the shim in bcryptprimitives.c).
fn main() {
    let mut m = std::collections::HashMap::new();
    m.insert("ProcessPrng", "ok");
    println!("ProcessPrng {}", m["ProcessPrng"]);
}

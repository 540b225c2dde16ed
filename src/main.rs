fn main() {
    println!("regmirror {}", env!("CARGO_PKG_VERSION"));
}

fn main() {
    println!("maia-sync");
}

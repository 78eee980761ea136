fn main() {
    // The migrations are embedded by `sqlx::migrate!`: a changed file rebuilds the crate.
    println!("cargo:rerun-if-changed=migrations");
}

//! UniFFI's binding generator, of the version the library is built with.

fn main() {
    uniffi::uniffi_bindgen_main()
}

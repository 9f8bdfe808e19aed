//! Prints the host's OpenAPI 3.1 document (the one served at `/openapi.json` on the admin
//! listener): `cargo run -p wxpay-host --example openapi > openapi.json`.

fn main() {
    match wxpay_host::http::openapi_document().to_pretty_json() {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("cannot render the OpenAPI document: {e}");
            std::process::exit(1);
        }
    }
}

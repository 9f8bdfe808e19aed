//! The C ABI for non-JS wasm hosts (documented in `wasm/README.md`).
//!
//! Exports `wxpay_alloc`, `wxpay_free` and `wxpay_call` (JSON in, JSON out, see [`ops`]);
//! imports one function, `wxpay_host.random_get(ptr, len) -> i32`, for every random byte
//! (RSA blinding, nonces, OAEP padding). RSA is the core's pure-Rust provider.

pub mod host;
pub mod ops;

#[cfg(target_arch = "wasm32")]
mod exports {
    // The one place in the project with `unsafe`: raw pointers are the C ABI.
    #![allow(unsafe_code)]

    use super::ops::State;
    use core::convert::Infallible;
    use rand_core::{TryCryptoRng, TryRng};
    use std::alloc::{Layout, alloc, dealloc};
    use std::cell::RefCell;

    #[link(wasm_import_module = "wxpay_host")]
    unsafe extern "C" {
        /// Fills `len` bytes at `ptr` with cryptographically secure random bytes; returns 0 on
        /// success. (WASI hosts can forward to `random_get`; others to their OS CSPRNG.)
        fn random_get(ptr: *mut u8, len: u32) -> i32;
    }

    /// The host's CSPRNG.
    struct HostRng;

    impl TryRng for HostRng {
        type Error = Infallible;

        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            let mut b = [0; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }

        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            let mut b = [0; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }

        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            let len = u32::try_from(dst.len()).unwrap_or(u32::MAX);
            // SAFETY: `dst` is a valid, writable region of `len` bytes in this module's memory.
            let rc = unsafe { random_get(dst.as_mut_ptr(), len) };
            if rc != 0 {
                // No entropy, no signature: trap rather than sign with predictable blinding.
                core::arch::wasm32::unreachable();
            }
            Ok(())
        }
    }

    impl TryCryptoRng for HostRng {}

    thread_local! {
        static STATE: RefCell<State> = RefCell::new(State::default());
    }

    /// Allocates `len` bytes for the host to write a request into; 0 if out of memory.
    #[unsafe(no_mangle)]
    pub extern "C" fn wxpay_alloc(len: u32) -> *mut u8 {
        match Layout::array::<u8>(len as usize) {
            Ok(layout) if layout.size() > 0 => {
                // SAFETY: the layout has a non-zero size.
                unsafe { alloc(layout) }
            }
            // A zero-length buffer needs no memory; any non-null aligned pointer will do.
            _ => core::ptr::NonNull::<u8>::dangling().as_ptr(),
        }
    }

    /// Frees a buffer from [`wxpay_alloc`] or a response from [`wxpay_call`].
    ///
    /// # Safety
    /// `ptr`/`len` must be exactly a live allocation returned by this module.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn wxpay_free(ptr: *mut u8, len: u32) {
        if let Ok(layout) = Layout::array::<u8>(len as usize)
            && layout.size() > 0
            && !ptr.is_null()
        {
            // SAFETY: the caller passes back an allocation of this layout (contract above).
            unsafe { dealloc(ptr, layout) }
        }
    }

    /// Runs one JSON request of `len` bytes at `ptr`; returns the response as
    /// `(ptr << 32) | len`. The host frees the response with [`wxpay_free`] (and its own
    /// request buffer too).
    ///
    /// # Safety
    /// `ptr`/`len` must be a readable region of this module's memory.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn wxpay_call(ptr: *const u8, len: u32) -> u64 {
        let request: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: the caller guarantees `ptr..ptr+len` is readable (contract above).
            unsafe { core::slice::from_raw_parts(ptr, len as usize) }
        };
        let response = STATE.with_borrow_mut(|s| s.call(&mut HostRng, request));
        // `Box<[u8]>` has exactly the layout `wxpay_free` deallocates with.
        let response = response.into_boxed_slice();
        let len = response.len() as u64;
        let ptr = Box::into_raw(response).cast::<u8>() as usize as u64;
        (ptr << 32) | len
    }
}

//! QEMU's `Error` object (`qapi/error.h`): a message, its QAPI class, an
//! optional hint and the place that created it. Opaque to C.
//!
//! Everything an `Error` carries lives in it, so freeing it frees all of it
//! (hints included) and copying or prefixing it keeps all of it. How errors
//! reach C through `Error **errp` (the `&error_abort` / `&error_fatal` /
//! `NULL` rules) is the C boundary's business: `src/ffi/error.rs`.

use std::ffi::{CStr, CString, c_int};

/// Where an error was created, for the report when it reaches
/// `&error_abort` or `&error_fatal`.
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    /// Created through the C API without a call site (`aioctx_error_new`).
    Unknown,
    /// Created by a C caller's `error_setg` & co.: `__func__`, `__FILE__`,
    /// `__LINE__` of the call, as QEMU records them.
    Caller {
        func: CString,
        src: CString,
        line: c_int,
    },
    /// Created by the library on behalf of the exported function named.
    Library(&'static str),
}

/// An error message, its QAPI class (`ErrorClass`: 0 is
/// `ERROR_CLASS_GENERIC_ERROR`), its hint (text `error_append_hint` added,
/// printed after the message) and its origin.
#[derive(Clone, Debug)]
pub struct Error {
    msg: CString,
    class: c_int,
    hint: Option<Vec<u8>>,
    origin: Origin,
}

/// `msg` as a C string: interior NULs cannot be represented in C; they
/// are replaced with the two characters `\0`.
fn c_string(msg: &[u8]) -> CString {
    let mut bytes = Vec::with_capacity(msg.len());
    for &b in msg {
        if b == 0 {
            bytes.extend_from_slice(b"\\0");
        } else {
            bytes.push(b);
        }
    }
    CString::new(bytes).expect("NULs were replaced")
}

impl Error {
    pub(crate) fn with_class(msg: &[u8], class: c_int, origin: Origin) -> Box<Error> {
        Box::new(Error {
            msg: c_string(msg),
            class,
            hint: None,
            origin,
        })
    }

    pub(crate) fn class(&self) -> c_int {
        self.class
    }

    pub(crate) fn message(&self) -> &CStr {
        &self.msg
    }

    pub(crate) fn origin(&self) -> &Origin {
        &self.origin
    }

    pub(crate) fn set_origin(&mut self, origin: Origin) {
        self.origin = origin;
    }

    /// The hint text so far (empty if none).
    pub(crate) fn hint(&self) -> &[u8] {
        self.hint.as_deref().unwrap_or_default()
    }

    /// Appends `text` to the hint (`error_append_hint`).
    pub(crate) fn append_hint(&mut self, text: &[u8]) {
        self.hint
            .get_or_insert_with(Vec::new)
            .extend_from_slice(text);
    }

    /// Prefixes the message with `prefix` (`error_prepend`); class, hint
    /// and origin stay.
    pub(crate) fn prepend(&mut self, prefix: &[u8]) {
        let mut msg = prefix.to_vec();
        msg.extend_from_slice(self.msg.as_bytes());
        self.msg = c_string(&msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_travels_with_the_error() {
        let mut e = Error::with_class(b"broken", 0, Origin::Unknown);
        assert!(e.hint().is_empty());
        e.append_hint(b"try ");
        e.append_hint(b"harder\n");
        e.prepend(b"pre: ");
        let copy = e.clone();
        assert_eq!(copy.message().to_bytes(), b"pre: broken");
        assert_eq!(copy.hint(), b"try harder\n");
        drop(e);
        assert!(
            Error::with_class(b"other", 0, Origin::Unknown)
                .hint()
                .is_empty()
        );
    }

    #[test]
    fn interior_nul_is_escaped() {
        let e = Error::with_class(b"a\0b", 3, Origin::Library("f"));
        assert_eq!(e.message().to_bytes(), b"a\\0b");
        assert_eq!(e.class(), 3);
    }
}

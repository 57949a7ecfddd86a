//! QEMU's error locations (`qemu/error-report.h`): the place a report is
//! about, printed by `error_report` before the message.
//!
//! As in QEMU, there is one process-wide stack of `Location`s linked
//! through `prev`; its bottom is a static location of kind `LOC_NONE`, and
//! `loc_set_*` change the location on top. The `Location`s themselves are
//! the caller's (usually on its stack); this module only links them.
//! The stack is guarded by one mutex, so concurrent `loc_*` calls and
//! reports do not race on it (QEMU itself uses it under the BQL).
//!
//! `Location` is declared by QEMU's header (`include/compat/qemu/error-report.h`:
//! `enum { LOC_NONE, LOC_CMDLINE, LOC_FILE } kind`); `aioctx.h` only
//! forward-declares it.
//!
//! The reporting side (`src/ffi/report.rs`) reads the current location
//! with [`current`].

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_void};
use std::ptr;
use std::sync::Mutex;

use super::boundary::ffi_call;
use crate::fatal::{Misuse, MisuseResult};

/// `Location::kind`: no location.
pub(crate) const LOC_NONE: c_int = 0;
/// `Location::kind`: `num` words of the command line starting at `ptr`
/// (a `char **`).
pub(crate) const LOC_CMDLINE: c_int = 1;
/// `Location::kind`: file `ptr` (a C string), line `num` (0: no line).
pub(crate) const LOC_FILE: c_int = 2;

/// QEMU's `Location` (24 bytes, align 8). The kind is a C enum, read as
/// an `int` so that any value C stores is a valid Rust value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Location {
    pub kind: c_int,
    pub num: c_int,
    pub ptr: *const c_void,
    pub prev: *mut Location,
}

const _: () = {
    assert!(std::mem::size_of::<Location>() == 24);
    assert!(std::mem::align_of::<Location>() == 8);
    assert!(std::mem::offset_of!(Location, kind) == 0);
    assert!(std::mem::offset_of!(Location, num) == 4);
    assert!(std::mem::offset_of!(Location, ptr) == 8);
    assert!(std::mem::offset_of!(Location, prev) == 16);
};

/// The bottom of the stack.
struct StdLoc(UnsafeCell<Location>);

// SAFETY: only accessed with `STACK` locked.
unsafe impl Sync for StdLoc {}

static STD_LOC: StdLoc = StdLoc(UnsafeCell::new(Location {
    kind: LOC_NONE,
    num: 0,
    ptr: ptr::null(),
    prev: ptr::null_mut(),
}));

/// The top of the stack; NULL stands for `STD_LOC`.
struct Top(*mut Location);

// SAFETY: the pointer is only dereferenced with `STACK` locked.
unsafe impl Send for Top {}

static STACK: Mutex<Top> = Mutex::new(Top(ptr::null_mut()));

/// Runs `f` with the stack locked and the current location.
fn with_stack<R>(f: impl FnOnce(&mut Top, *mut Location) -> MisuseResult<R>) -> MisuseResult<R> {
    let mut top = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let cur = if top.0.is_null() {
        STD_LOC.0.get()
    } else {
        top.0
    };
    f(&mut top, cur)
}

/// A copy of the current location (`prev` cleared), for a report prefix.
pub(super) fn current() -> Location {
    let loc = with_stack(|_, cur| {
        // SAFETY: `cur` is valid while the stack is locked.
        let mut copy = unsafe { *cur };
        copy.prev = ptr::null_mut();
        Ok(copy)
    });
    loc.unwrap_or(Location {
        kind: LOC_NONE,
        num: 0,
        ptr: ptr::null(),
        prev: ptr::null_mut(),
    })
}

fn non_null(loc: *mut Location) -> MisuseResult<*mut Location> {
    if loc.is_null() {
        Err(Misuse::new("Location is NULL"))
    } else {
        Ok(loc)
    }
}

/// Pushes `loc` (its contents unchanged) as the current location and
/// returns it. `loc->prev` must be NULL (`loc` not on the stack).
#[unsafe(no_mangle)]
pub extern "C" fn loc_push_restore(loc: *mut Location) -> *mut Location {
    ffi_call(c"loc_push_restore", || {
        let loc = non_null(loc)?;
        with_stack(|top, cur| {
            // SAFETY: `loc` is a valid `Location` per QEMU's contract.
            let l = unsafe { &mut *loc };
            if !l.prev.is_null() {
                return Err(Misuse::new(
                    "Location is already on the stack (prev is set)",
                ));
            }
            l.prev = cur;
            top.0 = loc;
            Ok(loc)
        })
    })
}

/// Initializes `loc` to "no location", pushes it and returns it.
#[unsafe(no_mangle)]
pub extern "C" fn loc_push_none(loc: *mut Location) -> *mut Location {
    ffi_call(c"loc_push_none", || {
        let loc = non_null(loc)?;
        // SAFETY: `loc` is a valid `Location` (possibly uninitialized:
        // written whole, not read).
        unsafe {
            loc.write(Location {
                kind: LOC_NONE,
                num: 0,
                ptr: ptr::null(),
                prev: ptr::null_mut(),
            })
        };
        Ok(())
    });
    loc_push_restore(loc)
}

/// Pops `loc`, which must be the current location and not the bottom one;
/// returns it with `prev` cleared.
#[unsafe(no_mangle)]
pub extern "C" fn loc_pop(loc: *mut Location) -> *mut Location {
    ffi_call(c"loc_pop", || {
        let loc = non_null(loc)?;
        with_stack(|top, cur| {
            if cur != loc {
                return Err(Misuse::new("Location is not the current location"));
            }
            // SAFETY: `loc` is the current location, a valid `Location`.
            let l = unsafe { &mut *loc };
            if l.prev.is_null() {
                return Err(Misuse::new("cannot pop the bottom location"));
            }
            top.0 = if l.prev == STD_LOC.0.get() {
                ptr::null_mut()
            } else {
                l.prev
            };
            l.prev = ptr::null_mut();
            Ok(loc)
        })
    })
}

/// Copies the current location into `loc` (with `prev` NULL) and returns
/// it, for a later `loc_restore` or `loc_push_restore`.
#[unsafe(no_mangle)]
pub extern "C" fn loc_save(loc: *mut Location) -> *mut Location {
    ffi_call(c"loc_save", || {
        let loc = non_null(loc)?;
        with_stack(|_, cur| {
            // SAFETY: `cur` is valid while the stack is locked; `loc` is a
            // writable `Location` per the contract (not read).
            unsafe {
                let mut copy = *cur;
                copy.prev = ptr::null_mut();
                loc.write(copy);
            }
            Ok(loc)
        })
    })
}

/// Makes the current location a copy of `loc` (saved with `loc_save`;
/// `loc->prev` must be NULL), keeping the stack linkage.
#[unsafe(no_mangle)]
pub extern "C" fn loc_restore(loc: *mut Location) {
    ffi_call(c"loc_restore", || {
        let loc = non_null(loc)?;
        with_stack(|_, cur| {
            // SAFETY: `loc` is a valid `Location` per the contract.
            let saved = unsafe { *loc };
            if !saved.prev.is_null() {
                return Err(Misuse::new("Location is on the stack (prev is set)"));
            }
            // SAFETY: `cur` is valid while the stack is locked.
            let c = unsafe { &mut *cur };
            *c = Location {
                prev: c.prev,
                ..saved
            };
            Ok(())
        })
    })
}

/// Sets the current location to "none".
#[unsafe(no_mangle)]
pub extern "C" fn loc_set_none() {
    ffi_call(c"loc_set_none", || {
        with_stack(|_, cur| {
            // SAFETY: `cur` is valid while the stack is locked.
            unsafe { (*cur).kind = LOC_NONE };
            Ok(())
        })
    })
}

/// Sets the current location to the `cnt` command-line words starting at
/// `argv[idx]` (which must live as long as the location is current).
#[unsafe(no_mangle)]
pub extern "C" fn loc_set_cmdline(argv: *mut *mut c_char, idx: c_int, cnt: c_int) {
    ffi_call(c"loc_set_cmdline", || {
        if argv.is_null() && cnt > 0 {
            return Err(Misuse::new("argv is NULL"));
        }
        with_stack(|_, cur| {
            // SAFETY: `cur` is valid while the stack is locked.
            let c = unsafe { &mut *cur };
            c.kind = LOC_CMDLINE;
            c.num = cnt;
            c.ptr = argv.wrapping_offset(idx as isize).cast_const().cast();
            Ok(())
        })
    })
}

/// Sets the current location to line `lno` (0: none) of file `fname`
/// (kept, not copied). A NULL `fname` keeps the file of a current file
/// location and changes only the line.
#[unsafe(no_mangle)]
pub extern "C" fn loc_set_file(fname: *const c_char, lno: c_int) {
    ffi_call(c"loc_set_file", || {
        with_stack(|_, cur| {
            // SAFETY: `cur` is valid while the stack is locked.
            let c = unsafe { &mut *cur };
            if fname.is_null() && c.kind != LOC_FILE {
                return Err(Misuse::new(
                    "fname is NULL and the current location is not a file",
                ));
            }
            c.kind = LOC_FILE;
            c.num = lno;
            if !fname.is_null() {
                c.ptr = fname.cast();
            }
            Ok(())
        })
    })
}

/// When true, `error_report` & co. start each line with the time (UTC,
/// ISO 8601), as QEMU's `-msg timestamp=on`.
#[unsafe(no_mangle)]
pub static mut message_with_timestamp: bool = false;

/// When true and `error_guest_name` is set, `error_report` & co. print the
/// guest name before the message, as QEMU's `-msg guest-name=on`.
#[unsafe(no_mangle)]
pub static mut error_with_guestname: bool = false;

/// The guest name printed when `error_with_guestname` is true (NULL: none).
#[unsafe(no_mangle)]
pub static mut error_guest_name: *const c_char = ptr::null();

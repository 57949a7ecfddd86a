//! RCU (`qemu/rcu.h`, declared there rather than in `aioctx.h`, see
//! cbindgen.toml): the writer side and thread registration. The logic, and
//! the data objects QEMU's inline read side names (`rcu_gp_ctr`,
//! `rcu_gp_event`), are in `crate::rcu`.

use super::boundary::ffi_call;
use crate::fatal::Misuse;
use crate::rcu::{self, RcuFunc, RcuHead, RcuReaderData};

/// The calling thread's reader record (QEMU's layout), registering the
/// thread on first use. QEMU's inline `rcu_read_lock()` calls it.
#[unsafe(no_mangle)]
pub extern "C" fn get_ptr_rcu_reader() -> *mut RcuReaderData {
    ffi_call(c"get_ptr_rcu_reader", || Ok(rcu::reader_ptr()))
}

/// True while this thread is inside a read-side critical section.
#[unsafe(no_mangle)]
pub extern "C" fn rcu_read_locked() -> bool {
    ffi_call(c"rcu_read_locked", || Ok(rcu::read_locked()))
}

/// Blocks until every reader inside a section when it was called has left.
#[unsafe(no_mangle)]
pub extern "C" fn synchronize_rcu() {
    ffi_call(c"synchronize_rcu", rcu::synchronize_rcu)
}

/// Registers the calling thread as a reader (optional in aioctx).
#[unsafe(no_mangle)]
pub extern "C" fn rcu_register_thread() {
    ffi_call(c"rcu_register_thread", rcu::register_thread)
}

/// Unregisters the calling thread (outside any section).
#[unsafe(no_mangle)]
pub extern "C" fn rcu_unregister_thread() {
    ffi_call(c"rcu_unregister_thread", rcu::unregister_thread)
}

/// fork() support: a no-op in aioctx.
#[unsafe(no_mangle)]
pub extern "C" fn rcu_enable_atfork() {}

/// fork() support: a no-op in aioctx.
#[unsafe(no_mangle)]
pub extern "C" fn rcu_disable_atfork() {}

/// Queues `func(head)` to run after a grace period on the RCU thread, with
/// the BQL held. `head` must stay valid until then.
#[unsafe(no_mangle)]
pub extern "C" fn call_rcu1(head: *mut RcuHead, func: Option<RcuFunc>) {
    ffi_call(c"call_rcu1", || {
        if head.is_null() {
            return Err(Misuse::new("rcu_head is NULL"));
        }
        let func = func.ok_or_else(|| Misuse::new("callback is NULL"))?;
        // SAFETY: head is non-NULL; the C contract keeps it valid until
        // func runs.
        unsafe { rcu::call_rcu(head, func) }
    })
}

/// Waits until every callback queued before the call has run (releasing
/// the BQL meanwhile if this thread holds it).
#[unsafe(no_mangle)]
pub extern "C" fn drain_call_rcu() {
    ffi_call(c"drain_call_rcu", rcu::drain_call_rcu)
}

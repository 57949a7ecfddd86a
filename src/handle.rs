//! Validating the pointers C holds to library objects (contexts, BHs,
//! pools, timer lists): one check for all of them, by a magic number in
//! the object (live, or dead while a freed object's memory is kept or not
//! yet reused), with one-line problems named after the C type.
//!
//! A leaf module: the core validates handles too (a timer's list, a list's
//! owner, a GSource callback's context), so the trait lives here and
//! `ffi::boundary` re-exports it.

use crate::fatal::{Misuse, MisuseResult};

/// An object C refers to by pointer, recognised by its magic number.
pub(crate) trait Handle: Sized {
    /// The C type, first word of every problem ("AioContext").
    const NAME: &'static str;
    /// The magic of a live object.
    const LIVE: u32;
    /// The magic of a freed one.
    const DEAD: u32;
    /// The problem for a freed object, after the name ("was already freed").
    const FREED: &'static str;
    /// The problem for memory without the magic ("is not a valid context").
    const INVALID: &'static str;
    /// Whether a misaligned pointer is reported before the magic is read.
    const CHECK_ALIGNED: bool = false;

    /// The object's magic number.
    fn magic(&self) -> u32;

    /// Further checks of a live object (fork generation, owner), inlined
    /// into every API call: a yes/no, so that the only error of
    /// [`Handle::from_handle`] comes from one out-of-line report.
    #[inline(always)]
    fn is_usable(&self) -> bool {
        true
    }

    /// Why [`Handle::is_usable`] said no (built out of line).
    fn unusable(&self) -> Misuse {
        Misuse::new(format!("{} {}", Self::NAME, Self::INVALID))
    }

    /// Validates a C handle: NULL, (if checked) misaligned, freed, garbage
    /// and unusable ([`Handle::is_usable`]) are each reported as such. The
    /// live case is inlined into every API call; the reports are built out
    /// of line.
    ///
    /// # Safety
    /// `p` is null or points to readable memory of at least a `Self` (an
    /// object of this type, possibly freed while its memory is kept:
    /// detection of a freed one whose memory was reused is best effort).
    #[inline(always)]
    unsafe fn from_handle<'a>(p: *const Self) -> MisuseResult<&'a Self> {
        // SAFETY: per this function's contract.
        if unsafe { Self::is_handle(p) } {
            // SAFETY: checked just above.
            Ok(unsafe { &*p })
        } else {
            // SAFETY: per this function's contract.
            Err(unsafe { handle_problem(p) })
        }
    }

    /// Whether [`Handle::from_handle`] would accept `p`.
    ///
    /// # Safety
    /// As for [`Handle::from_handle`].
    #[inline(always)]
    unsafe fn is_handle(p: *const Self) -> bool {
        if p.is_null() || (Self::CHECK_ALIGNED && !p.is_aligned()) {
            return false;
        }
        // SAFETY: non-null (and aligned where it matters), and readable per
        // the caller; only the atomic magic is read before it is checked.
        let r = unsafe { &*p };
        r.magic() == Self::LIVE && r.is_usable()
    }
}

/// Implements [`Handle`] for a type with a `magic: AtomicU32` field (read
/// with `Acquire`): its C name, the magic numbers of a live and of a freed
/// object, the two problem texts, optionally `aligned: true` (report a
/// misaligned pointer before reading the magic), and after a `;` the
/// further checks of a live object (`is_usable` / `unusable`) when it has
/// any. One invocation per handle type.
macro_rules! impl_handle {
    ($ty:ty = $name:literal, magic: $live:expr, $dead:expr,
     freed: $freed:literal, invalid: $invalid:literal $(, aligned: $aligned:literal)?
     $(; $($item:item)*)?) => {
        impl $crate::handle::Handle for $ty {
            const NAME: &'static str = $name;
            const LIVE: u32 = $live;
            const DEAD: u32 = $dead;
            const FREED: &'static str = $freed;
            const INVALID: &'static str = $invalid;
            $(const CHECK_ALIGNED: bool = $aligned;)?

            #[inline(always)]
            fn magic(&self) -> u32 {
                self.magic.load(::std::sync::atomic::Ordering::Acquire)
            }

            $($($item)*)?
        }
    };
}
pub(crate) use impl_handle;

/// What is wrong with a handle that failed [`Handle::from_handle`]'s fast
/// path: NULL, misaligned, freed, garbage or unusable.
///
/// # Safety
/// As for [`Handle::from_handle`].
#[cold]
#[inline(never)]
unsafe fn handle_problem<H: Handle>(p: *const H) -> Misuse {
    if p.is_null() {
        return Misuse::new(format!("{} is NULL", H::NAME));
    }
    if H::CHECK_ALIGNED && !p.is_aligned() {
        return Misuse::new(format!("{} pointer is misaligned", H::NAME));
    }
    // SAFETY: non-null, aligned where it matters, readable per the caller.
    let r = unsafe { &*p };
    let magic = r.magic();
    if magic == H::LIVE {
        r.unusable()
    } else if magic == H::DEAD {
        Misuse::new(format!("{} {}", H::NAME, H::FREED))
    } else {
        Misuse::new(format!("{} {}", H::NAME, H::INVALID))
    }
}

//! A zeroed allocation that can fail: `vec![0u8; n]` aborts the process
//! when the memory cannot be had, and writing zeros after a `try_reserve`
//! would touch every page. The proxy sizes its buffer pools from user
//! input, so it allocates them here and turns a refusal into an error line.

use std::alloc::{self, Layout};

/// `n` zero bytes in one allocation from the global allocator (straight
/// from `mmap` when large, so untouched pages are never resident), or
/// `None` if the allocator refuses.
pub fn try_zeroed(n: usize) -> Option<Box<[u8]>> {
    if n == 0 {
        return Some(Box::default());
    }
    let layout = Layout::array::<u8>(n).ok()?;
    // SAFETY: `layout` has a non-zero size (n > 0), as `alloc_zeroed` requires.
    let ptr = unsafe { alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        return None;
    }
    let slice = std::ptr::slice_from_raw_parts_mut(ptr, n);
    // SAFETY: `ptr` was allocated by the global allocator with the layout
    // of `[u8; n]` (align 1), which is the layout a `Box<[u8]>` of length
    // `n` frees with; its `n` bytes are initialised (zero); nothing else
    // owns it.
    Some(unsafe { Box::from_raw(slice) })
}

#[cfg(test)]
mod tests {
    use super::try_zeroed;

    #[test]
    fn zeroed_allocations_are_zero_or_refused() {
        assert_eq!(try_zeroed(0).map(|b| b.len()), Some(0));
        let b = try_zeroed(1 << 20).expect("1 MiB");
        assert!(b.iter().all(|&x| x == 0));
        assert!(
            try_zeroed(isize::MAX as usize).is_none(),
            "refused, not aborted"
        );
    }
}

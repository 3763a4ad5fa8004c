//! The counting global allocator of core's no-allocation tests, shared by every test binary that
//! includes it (`#[path = "support/counting_alloc.rs"] mod counting_alloc;`): it declares the
//! binary's `#[global_allocator]`, which forwards to `System` and counts each `alloc`,
//! `alloc_zeroed` and `realloc` made by a thread while that thread is inside
//! [`allocations_during`]. Both the switch and the count are thread-local, so the harness's other
//! threads (and other tests running at once) never add to a measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Whether this thread is inside `allocations_during`.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    /// Allocations this thread made while measuring.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the thread-locals may be gone while a thread shuts down. Both are `const` and
    // without a destructor, so touching them never allocates (no recursion into the allocator).
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with how many allocations it made on this thread. Measuring
/// stops even if `f` panics.
pub fn allocations_during<R>(f: impl FnOnce() -> R) -> (R, u64) {
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            MEASURING.with(|m| m.set(false));
        }
    }
    let before = ALLOCATIONS.with(Cell::get);
    MEASURING.with(|m| m.set(true));
    let stop = Stop;
    let r = f();
    drop(stop);
    (r, ALLOCATIONS.with(Cell::get) - before)
}

/// The control every measuring test starts with: a `Vec` allocation is seen, so a count of zero
/// elsewhere means something.
pub fn assert_counter_sees_allocations() {
    let ((), n) = allocations_during(|| {
        let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(64));
        std::hint::black_box(v);
    });
    assert!(n >= 1, "the counting allocator must see a Vec allocation");
}

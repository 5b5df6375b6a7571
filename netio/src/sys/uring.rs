//! io_uring for the proxy's uring engine: whether the kernel offers what
//! the engine needs ([`usable`]), and the ring itself ([`Ring`]).
//!
//! Every buffer the kernel reads or writes after a submission belongs to
//! the ring and stays where it is until the kernel is done with it: the
//! provided-buffer ring the receives fill, the send buffers (lent to the
//! caller to fill, locked while their send is in flight), and the address
//! slots of the accepts. So the ring's API is safe: no entry it submits
//! can point at memory the caller might free or change. When a ring is
//! dropped its buffers are leaked, since the kernel may finish cancelled
//! requests after its descriptor is closed; a worker drops its ring only
//! when it stops.

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::alloc::{self, Layout};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::socket::{self, RawAddr};

/// One completion: the submission's tag, its result (`-errno` on failure)
/// and the kernel's flags.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    pub data: u64,
    pub result: i32,
    pub flags: u32,
}

impl Completion {
    /// A multishot request goes on after this completion.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// The provided buffer this completion filled, if any.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

/// A piece of a provided buffer that a receive filled: the buffer, where
/// in it, how many bytes. Held by the caller until [`Ring::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub bid: u16,
    pub at: u32,
    pub len: u32,
}

/// What the ring has done since it was made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// `io_uring_enter(2)` calls.
    pub enters: u64,
    /// Submission-queue entries handed to the kernel.
    pub submitted: u64,
    /// Completions taken.
    pub completed: u64,
}

/// A send buffer of the ring (see [`Ring::take_send`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendId(pub u32);

struct SendBuf {
    data: Vec<u8>,
    /// A send of it is in flight: the kernel may read it.
    busy: bool,
    /// Given back while busy: freed when its send completes.
    released: bool,
}

/// A send buffer kept for reuse keeps up to this much of its capacity:
/// a large write's buffer is not held by every connection after it.
const SEND_KEEP: usize = 16 * 1024;

/// Empties a send buffer given back, freeing a large one's memory.
fn recycle(data: &mut Vec<u8>) {
    if data.capacity() > SEND_KEEP {
        *data = Vec::new();
    } else {
        data.clear();
    }
}

/// Where one accept writes the client's address.
struct AcceptSlot {
    addr: libc::sockaddr_storage,
    len: libc::socklen_t,
}

/// The provided-buffer ring: `count` buffers of `size` bytes that the
/// kernel picks from for each receive, and gives back to us filled.
struct BufRing {
    /// The ring of entries the kernel reads (page-aligned).
    entries: *mut types::BufRingEntry,
    entries_layout: Layout,
    /// The buffers themselves, `count * size` bytes.
    mem: *mut u8,
    mem_layout: Layout,
    size: u32,
    count: u16,
    tail: u16,
    group: u16,
    /// Buffers are consumed incrementally (`IOU_PBUF_RING_INC`): one
    /// buffer takes several receives, each after the last.
    incremental: bool,
    /// Each buffer is in the ring (the kernel may write it), else ours.
    in_ring: Vec<bool>,
    /// Bytes the kernel has written into each buffer since it was given.
    filled: Vec<u32>,
    /// Pieces of each buffer the caller still holds.
    pieces: Vec<u32>,
}

/// `IOU_PBUF_RING_INC` (Linux 6.12): buffers consumed a piece at a time.
const PBUF_RING_INC: u16 = 2;

/// The group id of the one buffer ring a ring has.
const GROUP: u16 = 0;

impl BufRing {
    fn new(count: u16, size: u32) -> io::Result<BufRing> {
        if !count.is_power_of_two() || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a buffer ring needs a power-of-two count and a size (got {count} of {size} bytes)"),
            ));
        }
        let bad = |e: alloc::LayoutError| io::Error::new(io::ErrorKind::InvalidInput, e);
        let entries_layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(bad)?;
        let mem_layout =
            Layout::from_size_align(usize::from(count) * size as usize, 4096).map_err(bad)?;
        // SAFETY: both layouts have a non-zero size (count and size are
        // non-zero). Zeroed memory is a valid array of ring entries, and
        // untouched zero pages cost no memory until the kernel fills them.
        let (entries, mem) = unsafe {
            (
                alloc::alloc_zeroed(entries_layout).cast::<types::BufRingEntry>(),
                alloc::alloc_zeroed(mem_layout),
            )
        };
        if entries.is_null() || mem.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        Ok(BufRing {
            entries,
            entries_layout,
            mem,
            mem_layout,
            size,
            count,
            tail: 0,
            group: GROUP,
            incremental: false,
            in_ring: vec![false; usize::from(count)],
            filled: vec![0; usize::from(count)],
            pieces: vec![0; usize::from(count)],
        })
    }

    /// Hands buffer `bid` (back) to the kernel.
    fn give(&mut self, bid: u16) {
        let i = usize::from(bid);
        if self.in_ring.get(i).copied().unwrap_or(true) {
            return; // Not ours to give: already in the ring.
        }
        self.in_ring[i] = true;
        self.filled[i] = 0;
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot < count`, within the entries' allocation; the
        // kernel reads only entries below the tail, and this one is at it.
        let e = unsafe { &mut *self.entries.add(slot) };
        e.set_addr(self.addr(bid) as u64);
        e.set_len(self.size);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `entries` is the ring's first entry, so its `resv` field
        // is the tail the kernel reads; the store publishes the entry
        // written above (release), as io_uring_buf_ring_advance does.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries).cast_mut();
            std::sync::atomic::AtomicU16::from_ptr(tail)
                .store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    fn addr(&self, bid: u16) -> *mut u8 {
        // SAFETY: `bid < count`, so the offset is within `mem`.
        unsafe { self.mem.add(usize::from(bid) * self.size as usize) }
    }
}

/// An io_uring set up for one thread, with a provided-buffer ring for its
/// receives, a pool of send buffers, and address slots for its accepts.
pub struct Ring {
    ring: IoUring,
    /// Made disabled; enabled by the thread that will submit (a
    /// single-issuer ring belongs to the thread that enables it).
    enabled: bool,
    bufs: BufRing,
    sends: Vec<SendBuf>,
    free_sends: Vec<u32>,
    accepts: Box<[AcceptSlot]>,
    /// The address of each connect slot's connect ([`Ring::connect`]).
    connects: Box<[ConnectAddr]>,
    counts: Counts,
}

/// A connect's address, where the kernel reads it when the connect is
/// submitted: room for an IPv6 address (an IPv4 one is smaller).
#[derive(Clone, Copy)]
#[repr(C)]
struct ConnectAddr {
    addr: libc::sockaddr_in6,
    len: libc::socklen_t,
    /// The ring's enter count when it was written: while no enter has
    /// followed, a connect still to be submitted reads it.
    written_at: u64,
}

/// `TCP_NODELAY`'s value, read by the kernel when its request runs.
static ONE: i32 = 1;

/// What a [`Ring`] is made with.
#[derive(Debug, Clone, Copy)]
pub struct RingSize {
    /// Submission-queue entries (the completion queue gets eight times as many).
    pub entries: u32,
    /// Provided buffers (a power of two, at most 32768).
    pub buffers: u16,
    /// Bytes each.
    pub buffer_size: u32,
    /// Accepts that may be in flight at once.
    pub accepts: usize,
    /// Connect slots, for connects that may be in flight at once (one per
    /// pair).
    pub connects: usize,
}

impl Ring {
    pub fn new(size: RingSize) -> io::Result<Ring> {
        let mut b = builder();
        b.setup_cqsize(size.entries * 8).setup_r_disabled();
        let ring = b.build(size.entries)?;
        let mut bufs = BufRing::new(size.buffers, size.buffer_size)?;
        // SAFETY: the entries stay allocated (and are never moved) for as
        // long as the ring exists: they are freed only if the ring's
        // making fails below, and leaked when it is dropped.
        let register = |flags| unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries as u64,
                bufs.count,
                bufs.group,
                flags,
            )
        };
        // Incremental consumption where the kernel has it: a small
        // message then takes only its own bytes of a buffer.
        let registered = match register(PBUF_RING_INC) {
            Ok(()) => Ok(true),
            Err(_) => register(0).map(|()| false),
        };
        let registered = registered.map(|inc| bufs.incremental = inc);
        if let Err(e) = registered {
            // SAFETY: allocated with these layouts in BufRing::new, and the
            // kernel never saw them.
            unsafe {
                alloc::dealloc(bufs.entries.cast(), bufs.entries_layout);
                alloc::dealloc(bufs.mem, bufs.mem_layout);
            }
            return Err(e);
        }
        for bid in 0..bufs.count {
            bufs.give(bid);
        }
        let accepts = (0..size.accepts)
            .map(|_| AcceptSlot {
                // SAFETY: plain data; all-zero is a valid value.
                addr: unsafe { std::mem::zeroed() },
                len: 0,
            })
            .collect();
        let connects = (0..size.connects)
            .map(|_| ConnectAddr {
                // SAFETY: plain data; all-zero is a valid value.
                addr: unsafe { std::mem::zeroed() },
                len: 0,
                written_at: u64::MAX,
            })
            .collect();
        Ok(Ring {
            ring,
            enabled: false,
            bufs,
            sends: Vec::new(),
            free_sends: Vec::new(),
            accepts,
            connects,
            counts: Counts::default(),
        })
    }

    /// `TCP_NODELAY` on the new socket `fd`, then its connect to `addr`,
    /// linked in one submission (the connect runs once the option is set),
    /// with connect slot `k`'s address storage. The option's request posts
    /// a completion (tagged `nodelay`) only if it fails, and the connect
    /// is then cancelled; the connect's completion (tagged `connect`) says
    /// how it ended: 0, or `-errno`.
    ///
    /// `fd` must stay open until the connect's completion: a linked
    /// request looks its descriptor up only when it runs. False (nothing
    /// submitted) if there is no slot `k`.
    ///
    /// A failed option ends the chain with its own completion only: the
    /// kernel posts none for the connect after it (a request skipped on
    /// success that fails suppresses its links' completions).
    pub fn connect(
        &mut self,
        k: usize,
        fd: RawFd,
        addr: &SocketAddr,
        nodelay: u64,
        connect: u64,
    ) -> bool {
        if self
            .connects
            .get(k)
            .is_some_and(|c| c.written_at == self.counts.enters)
        {
            // A connect queued since the last enter still reads this
            // slot's address: it goes in first.
            let _ = self.submit_for(Some(Duration::ZERO));
        }
        let enters = self.counts.enters;
        let Some(slot) = self.connects.get_mut(k) else {
            return false;
        };
        slot.written_at = enters;
        let raw = RawAddr::new(addr);
        let len = (raw.len as usize).min(std::mem::size_of::<libc::sockaddr_in6>());
        // SAFETY: both are plain data; `len` bytes fit in each (the address
        // is at most a sockaddr_in6, and the copy is clamped to it).
        unsafe {
            std::ptr::copy_nonoverlapping(
                raw.ptr().cast::<u8>(),
                (&mut slot.addr as *mut libc::sockaddr_in6).cast::<u8>(),
                len,
            );
        }
        slot.len = len as libc::socklen_t;
        let ptr = (&slot.addr as *const libc::sockaddr_in6).cast::<libc::sockaddr>();
        let option = nodelay_entry(fd)
            .flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS)
            .user_data(nodelay);
        let conn = opcode::Connect::new(types::Fd(fd), ptr, slot.len)
            .build()
            .user_data(connect);
        self.push(&[option, conn]);
        true
    }

    /// Whether completions are posted that [`Ring::reap`] has not taken
    /// yet (an entry can complete inline in any submission, such as the
    /// one that makes room in a full submission queue).
    pub fn completions_waiting(&mut self) -> bool {
        // Also those the kernel keeps aside while the queue is full.
        self.ring.submission().cq_overflow() || !self.ring.completion().is_empty()
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Bytes in each provided buffer.
    pub fn buffer_size(&self) -> usize {
        self.bufs.size as usize
    }

    /// Queues `e`, handing the queue to the kernel first if it is full;
    /// `room` entries are made free first, for a chain that must go in
    /// one submission.
    fn push(&mut self, entries: &[squeue::Entry]) {
        loop {
            let free = {
                let sq = self.ring.submission();
                sq.capacity() - sq.len()
            };
            if free >= entries.len() {
                break;
            }
            let _ = self.submit_for(Some(Duration::ZERO));
        }
        for e in entries {
            // SAFETY: every buffer an entry names belongs to the ring and
            // outlives the request (see the module's comment); there is
            // room, checked above.
            let _ = unsafe { self.ring.submission().push(e) };
        }
    }

    /// A multishot receive on `fd` into the provided buffers, at most
    /// `most` bytes a completion (0: a whole buffer) and, if `total` is
    /// not 0, `total` bytes in all: then it ends (a completion without
    /// `more`), so that what it can bring before the caller decides to
    /// submit it again is bounded. A kernel without that limit (before
    /// Linux 6.15) fails the receive with `EINVAL`.
    pub fn recv_multi(&mut self, fd: RawFd, most: u32, total: u32, data: u64) {
        let e = opcode::RecvMulti::new(types::Fd(fd), self.bufs.group)
            .len(most)
            .build();
        let e = if total > 0 { with_optlen(e, total) } else { e };
        self.push(&[e.user_data(data)]);
    }

    /// Takes a send buffer (empty) to fill with [`Ring::send_buf`].
    pub fn take_send(&mut self) -> SendId {
        if let Some(i) = self.free_sends.pop() {
            return SendId(i);
        }
        self.sends.push(SendBuf {
            data: Vec::new(),
            busy: false,
            released: false,
        });
        SendId(self.sends.len() as u32 - 1)
    }

    /// The contents of a send buffer, to fill; `None` while its send is in
    /// flight.
    pub fn send_buf(&mut self, id: SendId) -> Option<&mut Vec<u8>> {
        let b = self.sends.get_mut(id.0 as usize)?;
        (!b.busy && !b.released).then_some(&mut b.data)
    }

    /// Sends the send buffer `id` from byte `from` on to `fd`. The buffer
    /// is locked until [`Ring::send_done`].
    pub fn send(&mut self, fd: RawFd, id: SendId, from: usize, data: u64) {
        let Some(b) = self.sends.get_mut(id.0 as usize) else {
            return;
        };
        let rest = b.data.get(from..).unwrap_or_default();
        let (ptr, len) = (rest.as_ptr(), rest.len() as u32);
        b.busy = true;
        let e = opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        self.push(&[e.user_data(data)]);
    }

    /// The kernel is done with send buffer `id` (its send completed).
    pub fn send_done(&mut self, id: SendId) {
        let Some(b) = self.sends.get_mut(id.0 as usize) else {
            return;
        };
        b.busy = false;
        if b.released {
            b.released = false;
            recycle(&mut b.data);
            self.free_sends.push(id.0);
        }
    }

    /// Gives a send buffer back; if its send is still in flight, when it
    /// completes.
    pub fn release_send(&mut self, id: SendId) {
        let Some(b) = self.sends.get_mut(id.0 as usize) else {
            return;
        };
        if b.busy {
            b.released = true;
        } else if !b.released {
            recycle(&mut b.data);
            self.free_sends.push(id.0);
        }
    }

    /// Polls `fd` for input for as long as the poll lasts (multishot).
    pub fn poll_in(&mut self, fd: RawFd, data: u64) {
        let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build();
        self.push(&[e.user_data(data)]);
    }

    /// Polls `fd` for an error or a hang-up for as long as the poll lasts
    /// (multishot). The kernel adds the peer's FIN (`POLLRDHUP`) to every
    /// poll, and a one-shot poll armed after the FIN would complete at
    /// once every time; a multishot one reports only new wake-ups.
    pub fn poll_fault(&mut self, fd: RawFd, data: u64) {
        let events = (libc::POLLERR | libc::POLLHUP) as u32;
        let e = opcode::PollAdd::new(types::Fd(fd), events)
            .multi(true)
            .build();
        self.push(&[e.user_data(data)]);
    }

    /// Polls `fd` for room to write for as long as the poll lasts
    /// (multishot): each wake-up after a write found it full, as epoll's
    /// edge. Multishot for the same reason as [`Ring::poll_fault`]: after
    /// the peer's FIN a one-shot poll would end at once on it.
    pub fn poll_room(&mut self, fd: RawFd, data: u64) {
        let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32)
            .multi(true)
            .build();
        self.push(&[e.user_data(data)]);
    }

    /// Polls `fd` once for input (or its end: a FIN, an error, a hang-up):
    /// the one edge epoll would give, read with [`poll_bits`]. A poll finds
    /// a socket already ready at once.
    pub fn poll_once(&mut self, fd: RawFd, data: u64) {
        let events = libc::POLLIN | libc::POLLRDHUP;
        let e = opcode::PollAdd::new(types::Fd(fd), events as u32).build();
        self.push(&[e.user_data(data)]);
    }

    /// Polls a connecting socket once for the connect's end: its
    /// completion's result says, through [`connect_failed`].
    pub fn poll_connect(&mut self, fd: RawFd, data: u64) {
        let events = (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) as u32;
        let e = opcode::PollAdd::new(types::Fd(fd), events).build();
        self.push(&[e.user_data(data)]);
    }

    /// Cancels the requests tagged `targets` (those still on `fd`), then
    /// closes it: hard-linked in one submission, so that the close comes
    /// after the cancels (even a cancel that found nothing) and no request
    /// outlives its socket. With no target it is only the close. Cancels by
    /// tag are hash lookups in the kernel, where one by descriptor walks
    /// every pending request.
    pub fn cancel_close(&mut self, fd: OwnedFd, targets: &[u64], data: u64) {
        let raw = fd.into_raw_fd();
        let mut chain: Vec<squeue::Entry> = targets
            .iter()
            .map(|&t| {
                opcode::AsyncCancel2::new(types::CancelBuilder::user_data(t))
                    .build()
                    .user_data(data)
                    .flags(squeue::Flags::IO_HARDLINK)
            })
            .collect();
        chain.push(opcode::Close::new(types::Fd(raw)).build().user_data(data));
        self.push(&chain);
    }

    /// Cancels every request on `fd`, then closes it (hard-linked): for a
    /// socket whose requests are not known by tag (the listener's
    /// accepts).
    pub fn cancel_all_close(&mut self, fd: OwnedFd, data: u64) {
        let raw = fd.into_raw_fd();
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(raw)).all())
            .build()
            .user_data(data)
            .flags(squeue::Flags::IO_HARDLINK);
        let close = opcode::Close::new(types::Fd(raw)).build().user_data(data);
        self.push(&[cancel, close]);
    }

    /// Cancels every request on `fd` (which stays open).
    pub fn cancel_fd(&mut self, fd: RawFd, data: u64) {
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all()).build();
        self.push(&[e.user_data(data)]);
    }

    /// Cancels the request tagged `target`.
    pub fn cancel(&mut self, target: u64, data: u64) {
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::user_data(target)).build();
        self.push(&[e.user_data(data)]);
    }

    /// An accept on `listener` into address slot `k` (below the ring's
    /// `accepts`), non-blocking and close-on-exec.
    pub fn accept(&mut self, listener: RawFd, k: usize, data: u64) {
        let Some(slot) = self.accepts.get_mut(k) else {
            return;
        };
        slot.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let addr = (&mut slot.addr as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
        let e = opcode::Accept::new(types::Fd(listener), addr, &mut slot.len)
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build();
        self.push(&[e.user_data(data)]);
    }

    /// What the accept into slot `k` completed with (`result` from its
    /// completion): the client's socket and address.
    pub fn accepted(&self, k: usize, result: i32) -> io::Result<(OwnedFd, SocketAddr)> {
        if result < 0 {
            return Err(io::Error::from_raw_os_error(-result));
        }
        // SAFETY: a non-negative accept result is a new descriptor that
        // nothing else owns.
        let fd = unsafe { super::owned(result) };
        let slot = self
            .accepts
            .get(k)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let peer = super::socket::from_raw(&slot.addr)?;
        Ok((fd, peer))
    }

    /// Whether provided buffers are consumed incrementally.
    pub fn incremental(&self) -> bool {
        self.bufs.incremental
    }

    /// Notes a receive's completion into provided buffer `bid`: `len`
    /// bytes, and whether the kernel goes on filling that buffer
    /// (`IORING_CQE_F_BUF_MORE`). Returns where in the buffer they are;
    /// the caller holds that piece until [`Ring::release`].
    fn took(&mut self, bid: u16, len: u32, more: bool) -> u32 {
        let b = &mut self.bufs;
        let i = usize::from(bid);
        if i >= b.in_ring.len() {
            return 0;
        }
        let at = b.filled[i];
        b.filled[i] = at.saturating_add(len).min(b.size);
        b.pieces[i] += 1;
        if !more {
            b.in_ring[i] = false;
        }
        at
    }

    /// The `len` bytes at `at` of provided buffer `bid`, a piece the
    /// caller holds.
    pub fn piece(&self, bid: u16, at: u32, len: u32) -> &[u8] {
        let b = &self.bufs;
        let i = usize::from(bid);
        let held = b.pieces.get(i).copied().unwrap_or(0) > 0;
        let end = at.saturating_add(len);
        if !held || end > b.filled[i] {
            return &[];
        }
        // SAFETY: the piece is held and was completed by the kernel, which
        // writes a buffer only past what it has filled (and a buffer out
        // of the ring not at all); `at..end` lies within the buffer.
        unsafe { std::slice::from_raw_parts(b.addr(bid).add(at as usize), len as usize) }
    }

    /// Gives back one held piece of buffer `bid`; the buffer returns to the
    /// kernel once it has no piece held and the kernel is done with it.
    pub fn release(&mut self, bid: u16) {
        let b = &mut self.bufs;
        let i = usize::from(bid);
        let Some(p) = b.pieces.get_mut(i) else {
            return;
        };
        *p = p.saturating_sub(1);
        if *p == 0 && !b.in_ring[i] {
            b.give(bid);
        }
    }

    /// Submits what is queued and waits up to `timeout` (`None`: for
    /// ever) for a completion. It enters the kernel only when it must:
    /// with entries queued, with completions waiting to be run (the
    /// task-run flag, or completions the kernel kept aside while the queue
    /// was full: only an enter brings those in), or to sleep; with
    /// completions already there, or a zero timeout, it does not sleep. So
    /// a busy-polling loop that calls it with a zero timeout makes no
    /// system call while nothing happens.
    pub fn submit_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let queued = self.ring.submission().len();
        let pending = self.ring.submission().taskrun() || self.ring.submission().cq_overflow();
        let ready = !self.ring.completion().is_empty();
        let no_sleep = ready || timeout == Some(Duration::ZERO);
        if queued == 0 && !pending && no_sleep {
            return Ok(());
        }
        self.submit_for(if no_sleep {
            Some(Duration::ZERO)
        } else {
            timeout
        })
        .map(|_| ())
    }

    fn submit_for(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        if !self.enabled {
            // The first submission: this thread is the ring's one issuer.
            self.ring.submitter().register_enable_rings()?;
            self.enabled = true;
        }
        let queued = self.ring.submission().len();
        self.counts.enters += 1;
        let got = match timeout {
            Some(t) if t.is_zero() => self.ring.submitter().submit_and_wait(0),
            None => self.ring.submitter().submit_and_wait(1),
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match got {
            Ok(n) => {
                self.counts.submitted += n as u64;
                Ok(n)
            }
            Err(e) => match e.raw_os_error() {
                // A timeout or a signal ends the wait; the entries went in.
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => {
                    let left = self.ring.submission().len();
                    self.counts.submitted += (queued - left) as u64;
                    Ok(queued - left)
                }
                _ => Err(e),
            },
        }
    }

    /// Moves the completions waiting into `out`. A receive's completion
    /// that carries data comes with its piece, held by the caller until
    /// [`Ring::release`].
    pub fn reap(&mut self, out: &mut Vec<(Completion, Option<Piece>)>) {
        let before = out.len();
        for c in self.ring.completion() {
            out.push((
                Completion {
                    data: c.user_data(),
                    result: c.result(),
                    flags: c.flags(),
                },
                None,
            ));
        }
        for (c, piece) in &mut out[before..] {
            if let Some(bid) = c.buffer() {
                let len = c.result.max(0) as u32;
                let at = self.took(bid, len, cqueue::buffer_more(c.flags));
                *piece = Some(Piece { bid, at, len });
            }
        }
        self.counts.completed += (out.len() - before) as u64;
    }
}

// SAFETY: the raw pointers are the ring's own allocations, used only
// through `&mut self` (or `&self` for reads of held pieces); moving the
// ring to another thread before it is enabled moves them with it.
unsafe impl Send for BufRing {}

impl Drop for Ring {
    fn drop(&mut self) {
        // The kernel may still finish cancelled requests into these after
        // the ring's descriptor is closed: leaked, never freed (a worker
        // drops its ring only when it stops).
        self.sends
            .iter_mut()
            .for_each(|b| std::mem::forget(std::mem::take(&mut b.data)));
        let accepts = std::mem::take(&mut self.accepts);
        std::mem::forget(accepts);
        let connects = std::mem::take(&mut self.connects);
        std::mem::forget(connects);
    }
}

/// Where the kernel's submission entry keeps `optlen` (a receive's total
/// limit), which the io-uring crate does not set.
const SQE_OPTLEN: usize = 44;
const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);

/// `e` with its `optlen` field set.
fn with_optlen(e: squeue::Entry, optlen: u32) -> squeue::Entry {
    // SAFETY: an Entry is a `repr(C)` wrapper of the kernel's 64-byte
    // `io_uring_sqe` (the size is asserted above), plain data with no
    // invalid bit patterns; `optlen` is the u32 at byte 44 of it.
    let mut raw: [u8; 64] = unsafe { std::mem::transmute(e) };
    raw[SQE_OPTLEN..SQE_OPTLEN + 4].copy_from_slice(&optlen.to_ne_bytes());
    // SAFETY: as above; only the 4 bytes of `optlen` changed.
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(raw) }
}

/// Whether a poll's completion ([`Ring::poll_connect`],
/// [`Ring::poll_fault`]) says the socket failed: an error or a hang-up
/// (a FIN alone, which the kernel may report too, is not).
pub fn poll_failed(result: i32) -> bool {
    result < 0 || result as i16 & (libc::POLLERR | libc::POLLHUP) != 0
}

/// What a poll's completion reports, as epoll's bits (`IN`, `OUT`,
/// `RDHUP`, `HUP`, `ERR`); none for a failed poll.
pub fn poll_bits(result: i32) -> u32 {
    use super::epoll::{ERR, HUP, IN, OUT, RDHUP};
    let r = if result > 0 { result as i16 } else { 0 };
    [
        (libc::POLLIN, IN),
        (libc::POLLOUT, OUT),
        (libc::POLLRDHUP, RDHUP),
        (libc::POLLHUP, HUP),
        (libc::POLLERR, ERR),
    ]
    .into_iter()
    .filter(|&(p, _)| r & p != 0)
    .fold(0, |bits, (_, b)| bits | b)
}

/// A completion's `-errno` results the engine tells apart.
pub const CANCELED: i32 = -libc::ECANCELED;
pub const NO_BUFFERS: i32 = -libc::ENOBUFS;
pub const INVALID: i32 = -libc::EINVAL;
pub const NOT_FOUND: i32 = -libc::ENOENT;

/// The kernel switch that turns io_uring off (Linux 6.6 and later).
const DISABLED_SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

/// Why io_uring cannot be used here, in words for an error line, or
/// `Ok` if a ring with the engine's set-up flags can be made and it
/// supports every operation the engine submits.
pub fn usable() -> Result<(), String> {
    let disabled = std::fs::read_to_string(DISABLED_SYSCTL).ok();
    let probe = probe();
    explain(disabled.as_deref().map(str::trim), probe.as_ref().err())
}

/// What a failed ring set-up means, given the sysctl's value (if the
/// kernel has it).
fn explain(disabled: Option<&str>, setup: Option<&io::Error>) -> Result<(), String> {
    if disabled == Some("2") {
        return Err(format!(
            "io_uring is disabled on this kernel ({DISABLED_SYSCTL} is 2); use --engine epoll"
        ));
    }
    let Some(e) = setup else {
        return Ok(());
    };
    Err(match e.raw_os_error() {
        Some(libc::ENOSYS) => "this kernel has no io_uring (io_uring_setup: ENOSYS); use --engine epoll".to_string(),
        Some(libc::EPERM) if disabled == Some("1") => format!(
            "io_uring is limited to privileged users and the io_uring group here ({DISABLED_SYSCTL} is 1); use --engine epoll"
        ),
        Some(libc::EPERM) => "io_uring is not permitted to this process (io_uring_setup: EPERM, e.g. a seccomp filter); use --engine epoll".to_string(),
        Some(libc::EINVAL) => "this kernel's io_uring lacks single-issuer deferred task running (needs Linux 6.1 or later); use --engine epoll".to_string(),
        _ => format!("cannot set up io_uring: {e}; use --engine epoll"),
    })
}

/// Whether this kernel sets socket options through the ring, which
/// [`Ring::connect`] needs: tried once for the process, on a socket of
/// its own (the command's opcode is older than sockets' support of it,
/// Linux 6.7, and a security module may refuse it).
pub fn ring_connects() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| try_ring_option().unwrap_or(false))
}

/// `TCP_NODELAY` on `fd`, as a ring request.
fn nodelay_entry(fd: RawFd) -> squeue::Entry {
    opcode::SetSockOpt::new(
        types::Fd(fd),
        libc::IPPROTO_TCP as u32,
        libc::TCP_NODELAY as u32,
        (&ONE as *const i32).cast(),
        std::mem::size_of::<i32>() as u32,
    )
    .build()
}

fn try_ring_option() -> io::Result<bool> {
    let mut ring = builder().build(8)?;
    let mut p = io_uring::Probe::new();
    ring.submitter().register_probe(&mut p)?;
    if !p.is_supported(opcode::SetSockOpt::CODE) || !p.is_supported(opcode::Connect::CODE) {
        return Ok(false);
    }
    let fd = socket::stream_socket(&SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let e = nodelay_entry(std::os::fd::AsRawFd::as_raw_fd(&fd));
    // SAFETY: the option's value is a static; the ring has room.
    unsafe { ring.submission().push(&e) }.map_err(io::Error::other)?;
    ring.submit_and_wait(1)?;
    let done = ring.completion().next().map(|c| c.result());
    Ok(done == Some(0) && socket::nodelay(&fd)?)
}

/// Makes (and drops) a small ring set up as the engine sets up its own,
/// and checks that the operations it submits are supported.
fn probe() -> io::Result<()> {
    let ring = builder().build(8)?;
    let mut p = io_uring::Probe::new();
    ring.submitter().register_probe(&mut p)?;
    use io_uring::opcode;
    let needed = [
        (opcode::Accept::CODE, "accept"),
        (opcode::RecvMulti::CODE, "recv"),
        (opcode::Send::CODE, "send"),
        (opcode::AsyncCancel2::CODE, "cancel"),
        (opcode::Close::CODE, "close"),
        (opcode::PollAdd::CODE, "poll"),
        (opcode::Connect::CODE, "connect"),
    ];
    for (code, name) in needed {
        if !p.is_supported(code) {
            return Err(io::Error::other(format!(
                "this kernel's io_uring lacks the {name} operation"
            )));
        }
    }
    Ok(())
}

/// The set-up every ring of the engine gets: one thread submits
/// (`SINGLE_ISSUER`), completions are run only when that thread asks
/// (`DEFER_TASKRUN`, so no interrupt of a busy worker), and the shared
/// ring says when such work is waiting (`TASKRUN_FLAG`, for busy polling).
fn builder() -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    b.setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_submit_all();
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_is_named_with_the_way_out() {
        let e = |n| io::Error::from_raw_os_error(n);
        let two = explain(Some("2"), None).expect_err("disabled");
        assert!(two.contains("io_uring_disabled is 2"), "{two}");
        assert!(explain(Some("0"), None).is_ok());
        assert!(
            explain(None, None).is_ok(),
            "an old kernel without the switch"
        );
        let one = explain(Some("1"), Some(&e(libc::EPERM))).expect_err("group only");
        assert!(one.contains("io_uring group"), "{one}");
        let none = explain(None, Some(&e(libc::ENOSYS))).expect_err("absent");
        assert!(none.contains("no io_uring"), "{none}");
        let old = explain(Some("0"), Some(&e(libc::EINVAL))).expect_err("old");
        assert!(old.contains("6.1"), "{old}");
        for m in [two, one, none, old] {
            assert!(m.ends_with("use --engine epoll"), "{m}");
        }
    }

    /// A connected loopback pair: (the ring's side, the peer).
    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        a.set_nonblocking(true).expect("nonblocking");
        (a, b)
    }

    fn ring() -> Ring {
        Ring::new(RingSize {
            entries: 64,
            buffers: 16,
            buffer_size: 16 * 1024,
            accepts: 1,
            connects: 2,
        })
        .expect("ring")
    }

    /// A connect made by the ring: the socket ends up connected, with
    /// `TCP_NODELAY`, and only the connect posts a completion.
    #[test]
    fn a_ring_connect_sets_nodelay_and_connects() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let fd = crate::sys::socket::stream_socket(&addr).expect("socket");
        let mut r = ring();
        use std::os::fd::AsRawFd;
        assert!(r.connect(1, fd.as_raw_fd(), &addr, 5, 6));
        assert!(!r.connect(2, fd.as_raw_fd(), &addr, 5, 6), "no such slot");
        let mut out = Vec::new();
        reap_until(&mut r, &mut out, |o| !o.is_empty());
        let got: Vec<(u64, i32)> = out.iter().map(|(c, _)| (c.data, c.result)).collect();
        assert_eq!(got, [(6, 0)]);
        let s = std::net::TcpStream::from(fd);
        assert_eq!(s.peer_addr().expect("peer"), addr);
        assert!(s.nodelay().expect("nodelay"), "TCP_NODELAY not set");
        let (peer, _) = l.accept().expect("accept");
        assert_eq!(
            peer.peer_addr().expect("peer"),
            s.local_addr().expect("local")
        );
    }

    /// A refused ring connect says why in its completion.
    #[test]
    fn a_refused_ring_connect_says_why() {
        let addr = std::net::TcpListener::bind("[::1]:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let fd = crate::sys::socket::stream_socket(&addr).expect("socket");
        let mut r = ring();
        use std::os::fd::AsRawFd;
        assert!(r.connect(0, fd.as_raw_fd(), &addr, 5, 6));
        let mut out = Vec::new();
        reap_until(&mut r, &mut out, |o| !o.is_empty());
        let got: Vec<(u64, i32)> = out.iter().map(|(c, _)| (c.data, c.result)).collect();
        assert_eq!(got, [(6, -libc::ECONNREFUSED)]);
    }

    /// Waits for completions until `done` says enough (bounded).
    fn reap_until(
        r: &mut Ring,
        out: &mut Vec<(Completion, Option<Piece>)>,
        done: impl Fn(&[(Completion, Option<Piece>)]) -> bool,
    ) {
        for _ in 0..200 {
            r.submit_wait(Some(Duration::from_millis(10)))
                .expect("enter");
            r.reap(out);
            if done(out) {
                return;
            }
        }
        panic!("completions never came: {out:?}");
    }

    #[test]
    fn a_multishot_receive_delivers_pieces_in_order_and_ends_at_its_total() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let (a, mut b) = pair();
        let mut r = ring();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        b.write_all(&data).expect("write");
        r.recv_multi(a.as_raw_fd(), 4096, 20_000, 7);
        let mut out = Vec::new();
        reap_until(&mut r, &mut out, |o| o.iter().any(|(c, _)| !c.more()));
        let mut got = Vec::new();
        for (c, piece) in &out {
            assert_eq!(c.data, 7);
            if let Some(p) = piece {
                assert!(
                    p.len <= 4096,
                    "a piece beyond the per-completion limit: {p:?}"
                );
                got.extend_from_slice(r.piece(p.bid, p.at, p.len));
                r.release(p.bid);
            }
        }
        // The total limit ends the receive once it has brought that much
        // (it may round up to the completion that crossed it).
        assert!(
            got.len() >= 20_000 && got.len() < 20_000 + 4096,
            "{}",
            got.len()
        );
        assert_eq!(got, data[..got.len()], "pieces out of order or altered");
        assert_eq!(r.counts().completed as usize, out.len());
    }

    #[test]
    fn a_send_goes_out_whole_and_its_buffer_is_locked_until_done() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (a, mut b) = pair();
        let mut r = ring();
        let id = r.take_send();
        r.send_buf(id)
            .expect("free")
            .extend_from_slice(b"hello ring");
        r.send(a.as_raw_fd(), id, 0, 9);
        assert!(
            r.send_buf(id).is_none(),
            "a buffer in flight is not lent out"
        );
        let mut out = Vec::new();
        reap_until(&mut r, &mut out, |o| !o.is_empty());
        assert_eq!((out[0].0.data, out[0].0.result), (9, 10));
        r.send_done(id);
        r.release_send(id);
        assert_eq!(r.take_send(), id, "the buffer is reused");
        let mut got = [0u8; 10];
        b.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hello ring");
    }

    #[test]
    fn a_poll_reports_epoll_bits_and_a_fin_is_no_failure() {
        use crate::sys::epoll::{ERR, HUP, IN, RDHUP};
        let fin = libc::POLLIN | libc::POLLRDHUP;
        assert_eq!(poll_bits(i32::from(fin)), IN | RDHUP);
        assert!(!poll_failed(i32::from(fin)));
        let reset = libc::POLLERR | libc::POLLHUP;
        assert_eq!(poll_bits(i32::from(reset)), ERR | HUP);
        assert!(poll_failed(i32::from(reset)));
        assert!(poll_failed(-libc::ECANCELED));
        assert_eq!(poll_bits(-libc::ECANCELED), 0);
    }

    #[test]
    fn this_kernel_offers_what_the_engine_needs() {
        // The machines this runs on have io_uring on; if one does not, the
        // line says exactly why.
        if let Err(why) = usable() {
            panic!("io_uring: {why}");
        }
    }

    /// Completions past the queue's size wait in the kernel, and only an
    /// enter brings them in: with some kept aside, a turn that has nothing
    /// to submit and must not sleep still enters, and
    /// `completions_waiting` says so meanwhile. (Without it, a relay told
    /// to come back once they were in spun for ever with no system call.)
    #[test]
    fn completions_kept_aside_by_a_full_queue_come_in_at_the_next_turn() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let (a, mut b) = pair();
        b.write_all(b"x").expect("write");
        std::thread::sleep(Duration::from_millis(20));
        let mut r = ring();
        // More than the completion queue holds (8 times the 64 entries),
        // each completing as it is submitted: the socket is readable.
        let n = 600;
        for i in 0..n {
            r.poll_once(a.as_raw_fd(), i);
        }
        r.submit_wait(Some(Duration::ZERO)).expect("enter");
        let mut out = Vec::new();
        r.reap(&mut out);
        assert!(out.len() < n as usize, "the queue held them all");
        assert!(r.completions_waiting(), "the kept-aside ones not seen");
        // Nothing to submit and no sleeping: it must still enter.
        r.submit_wait(Some(Duration::ZERO)).expect("enter");
        r.reap(&mut out);
        assert_eq!(out.len(), n as usize, "completions left in the kernel");
    }
}

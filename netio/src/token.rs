//! Tokens: what the `u64` of an epoll event carries. Never a pointer: a
//! slot index, the slot's generation (bumped on every close) and which of
//! the slot's sockets the event is for. An event that arrives for a slot
//! closed (and perhaps reused) since it was queued has the old generation
//! and is dropped.

/// Which socket of a slot a token names: the client or the backend of a
/// proxied pair. Loops that hold one socket a slot (echo-backend, loadgen)
/// use [`Side::Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Client,
    Backend,
}

impl Side {
    /// Both sides, client first.
    pub const BOTH: [Side; 2] = [Side::Client, Side::Backend];

    /// The other socket of the pair.
    #[inline]
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Backend,
            Side::Backend => Side::Client,
        }
    }

    /// 0 for the client, 1 for the backend: for arrays indexed by side.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
        }
    }
}

/// One socket of one slot, at one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub slot: u32,
    pub gen: u32,
    pub side: Side,
}

/// The slots a token can name. The low 32 bits hold the slot and the side
/// and stay below `2^31`, so no token equals [`Token::LISTENER`] or
/// [`Token::CONTROL`], whatever its generation.
pub const MAX_SLOTS: usize = 1 << 30;

/// Slots at the top of the range kept for a loop's own sockets beside its
/// table (the proxy's health checks): a table holds fewer than
/// [`FIRST_SIDE_SLOT`] slots, so a token names one or the other.
pub const SIDE_SLOTS: usize = 1 << 16;

/// The first slot kept for a loop's own sockets (see [`SIDE_SLOTS`]).
pub const FIRST_SIDE_SLOT: usize = MAX_SLOTS - SIDE_SLOTS;

impl Token {
    /// The loop's listening socket.
    pub const LISTENER: u64 = u64::MAX;
    /// The loop's control eventfd (a cross-thread waker).
    pub const CONTROL: u64 = u64::MAX - 1;

    #[inline]
    pub fn new(slot: usize, gen: u32, side: Side) -> Token {
        debug_assert!(slot < MAX_SLOTS, "slot {slot} does not fit a token");
        Token {
            slot: slot as u32,
            gen,
            side,
        }
    }

    /// The slot as an index.
    #[inline]
    pub fn index(self) -> usize {
        self.slot as usize
    }

    /// The token of the loop's own socket `k` (below [`SIDE_SLOTS`]) at
    /// generation `gen`.
    #[inline]
    pub fn side_socket(k: usize, gen: u32) -> Token {
        debug_assert!(k < SIDE_SLOTS, "side socket {k} does not fit a token");
        Token::new(FIRST_SIDE_SLOT + k, gen, Side::Client)
    }

    /// Which of the loop's own sockets this token names, if it names one
    /// rather than a table slot.
    #[inline]
    pub fn side_index(self) -> Option<usize> {
        self.index().checked_sub(FIRST_SIDE_SLOT)
    }

    /// Generation in the high 32 bits, then the slot, then the side bit.
    #[inline]
    pub fn encode(self) -> u64 {
        (u64::from(self.gen) << 32) | (u64::from(self.slot) << 1) | self.side as u64
    }

    #[inline]
    pub fn decode(v: u64) -> Token {
        let side = if v & 1 == 0 {
            Side::Client
        } else {
            Side::Backend
        };
        Token {
            slot: (v as u32) >> 1,
            gen: (v >> 32) as u32,
            side,
        }
    }
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Listener,
    Control,
    Socket(Token),
}

impl Source {
    /// Reads an event's `u64`.
    #[inline]
    pub fn of(v: u64) -> Source {
        match v {
            Token::LISTENER => Source::Listener,
            Token::CONTROL => Source::Control,
            _ => Source::Socket(Token::decode(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_never_collide_with_the_fixed_sources() {
        for &(slot, gen) in &[(0, 0), (1, 7), (MAX_SLOTS - 1, u32::MAX), (12_345, 1 << 31)] {
            for side in Side::BOTH {
                let t = Token::new(slot, gen, side);
                assert_eq!(Token::decode(t.encode()), t);
                assert_eq!(Source::of(t.encode()), Source::Socket(t));
            }
        }
        assert_eq!(Source::of(Token::LISTENER), Source::Listener);
        assert_eq!(Source::of(Token::CONTROL), Source::Control);
    }

    #[test]
    fn side_sockets_are_told_apart_from_table_slots() {
        let t = Token::side_socket(3, 9);
        assert_eq!(Token::decode(t.encode()), t);
        assert_eq!(t.side_index(), Some(3));
        assert_eq!(
            Token::side_socket(SIDE_SLOTS - 1, u32::MAX).side_index(),
            Some(SIDE_SLOTS - 1)
        );
        assert_eq!(
            Token::new(FIRST_SIDE_SLOT - 1, 0, Side::Backend).side_index(),
            None
        );
        assert_eq!(Token::new(0, 0, Side::Client).side_index(), None);
    }

    #[test]
    fn sides_pair_up() {
        assert_eq!(Side::Client.other(), Side::Backend);
        assert_eq!(Side::Backend.other().index(), 0);
    }
}

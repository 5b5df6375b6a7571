//! Criterion benches for the buffer pool: the lend/return cycle the relay
//! does per message, and filling and draining a lent buffer.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use proxy::pool::Pool;

fn checkout_checkin(c: &mut Criterion) {
    let mut pool = Pool::new(1024, 8192);
    c.bench_function("pool/checkout+checkin", |b| {
        b.iter(|| {
            let buf = pool.checkout().expect("a free buffer");
            pool.checkin(black_box(buf));
        })
    });
}

fn exhausted_checkout(c: &mut Criterion) {
    let mut pool = Pool::new(4, 64);
    let held: Vec<_> = (0..4).map(|_| pool.checkout().expect("buffer")).collect();
    c.bench_function("pool/checkout-when-empty", |b| {
        b.iter(|| black_box(pool.checkout()).is_none())
    });
    for buf in held {
        pool.checkin(buf);
    }
}

fn fill_and_drain(c: &mut Criterion) {
    let mut pool = Pool::new(16, 8192);
    let src = vec![0xa5u8; 8192];
    let mut dst = vec![0u8; 8192];
    let mut g = c.benchmark_group("pool/fill+drain");
    g.throughput(Throughput::Bytes(8192));
    g.bench_function("8KiB in 2 writes", |b| {
        b.iter(|| {
            let mut buf = pool.checkout().expect("buffer");
            let spare = pool.spare(&buf);
            let n = spare.len();
            spare.copy_from_slice(&src[..n]);
            buf.fill(n);
            let half = buf.len() / 2;
            dst[..half].copy_from_slice(&pool.data(&buf)[..half]);
            buf.consume(half);
            let rest = buf.len();
            dst[half..half + rest].copy_from_slice(pool.data(&buf));
            buf.consume(rest);
            pool.checkin(buf);
            black_box(&dst);
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    checkout_checkin,
    exhausted_checkout,
    fill_and_drain
);
criterion_main!(benches);

//! Criterion benches for loadgen's per-message work: recording a latency,
//! verifying an echoed message against the seeded stream, and reading an
//! HTTP response. Each must stay far below a message's round trip on
//! loopback (tens of microseconds) for loadgen not to be the bottleneck.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use echo_backend::pattern::Pattern;
use loadgen::http::{Progress, Response};
use loadgen::stats::Tally;

fn record(c: &mut Criterion) {
    let mut tally = Tally::new();
    // Latencies spread over four orders of magnitude, as a real run has.
    let samples: Vec<u64> = (0..4096u64)
        .map(|i| 10_000 + (i * 7919 % 4096) * (1 + i % 1000))
        .collect();
    let mut i = 0;
    c.bench_function("histogram_record", |b| {
        b.iter(|| {
            tally.record(black_box(samples[i & 4095]));
            i += 1;
        })
    });
}

fn verify(c: &mut Criterion) {
    let pattern = Pattern::new(1);
    let mut group = c.benchmark_group("verify_echo");
    for size in [64usize, 1024, 16 * 1024] {
        let mut msg = vec![0u8; size];
        let at = 123_456u64;
        pattern.fill(at, &mut msg);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &msg, |b, msg| {
            b.iter(|| pattern.verify(black_box(at), black_box(msg)))
        });
    }
    group.finish();
}

fn http(c: &mut Criterion) {
    let resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
    let mut r = Response::new();
    c.bench_function("http_response", |b| {
        b.iter(|| {
            r.reset();
            let p = r.feed(black_box(resp));
            debug_assert_eq!(p, Ok(Progress::Done));
            p
        })
    });
}

criterion_group!(benches, record, verify, http);
criterion_main!(benches);

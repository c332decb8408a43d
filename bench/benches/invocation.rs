//! Issue 5 §1: invocation overhead, all variants in one criterion run (see
//! `pbx_bench::overhead` for what each variant is). `cargo bench -p pbx-bench`;
//! `loadgen overhead` measures the same variants interleaved for the ratios in BENCHMARKS.md.

use std::cell::RefCell;

use criterion::{Criterion, criterion_group, criterion_main};
use pbx_bench::overhead::{Overhead, VARIANTS};

fn invocation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let o = RefCell::new(Overhead::new().expect("benchmark set-up"));
    let mut group = c.benchmark_group("invocation");
    for &variant in VARIANTS {
        group.bench_function(variant, |b| {
            b.iter_custom(|iters| {
                rt.block_on(o.borrow_mut().run(variant, iters))
                    .unwrap_or_else(|e| panic!("{variant}: {e}"))
            })
        });
    }
    group.finish();
    assert!(o.borrow().log_lines() > 0, "the plugin wrote no log lines");
}

criterion_group!(benches, invocation);
criterion_main!(benches);

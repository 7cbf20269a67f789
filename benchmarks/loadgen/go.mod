module halodb.org/benchmarks/loadgen

go 1.22

package dataset

// BuildBatch exposes the batch builder to the benchmarks.
func (d *Dataset) BuildBatch(s Split, rows []int, o BatchOptions) Batch { return d.batch(s, rows, o) }

//go:build !unix

package checkpoints

// lockDir does nothing where flock is missing; Badger's own directory lock
// still refuses a second Open.
func lockDir(string) (func() error, error) { return func() error { return nil }, nil }

// canRepair is false: without flowerd's lock Open cannot be sure no other
// process is creating files in the directory.
const canRepair = false

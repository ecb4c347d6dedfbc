package records

// SetAfterForward sets a function the forwarder calls after a board's
// forward commits in the factory database and before the buffer notes
// it: where a station killed mid-forward leaves it.
func SetAfterForward(b *Buffered, f func(serial string)) { b.afterForward = f }

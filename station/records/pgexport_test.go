package records

import "context"

// Renew renews the leases of s's claims now, as its renewal does every
// third of a lease, and returns how many it renewed.
func Renew(ctx context.Context, s *PGStore) (int64, error) { return s.renew(ctx) }

// Package ownerfile makes files and folders that the user who runs
// zerotouch alone may read, on every system: on Unix by their mode (0600,
// 0700), on Windows by a DACL that grants the current user full control
// and nothing to anyone else, protected from the ACEs the folder above
// would pass down.
//
// A permission is private when it has no bits for group or others
// (perm&0o077 == 0). On Unix the functions here are the os ones. On
// Windows, where the os package maps a permission to the read-only flag
// alone, a file or folder made with a private permission gets the
// owner-alone DACL when it is made, so no other user can open it even
// for a moment; one made with another permission inherits its folder's
// ACL, as it would without this package.
package ownerfile

import (
	"errors"
	"os"
)

// ErrExposed means users other than a file's owner may read it.
var ErrExposed = errors.New("readable by other users")

// private reports whether perm keeps group and others out.
func private(perm os.FileMode) bool { return perm&0o077 == 0 }

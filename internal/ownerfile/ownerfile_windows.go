package ownerfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// OpenFile is os.OpenFile. A file it creates with a private perm is made
// with the owner-alone DACL (see Restrict); with another perm it inherits
// its folder's ACL. An existing file keeps its ACL.
func OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	if flag&os.O_CREATE == 0 || !private(perm) {
		return os.OpenFile(name, flag, perm)
	}
	err := create(name, false)
	switch {
	case errors.Is(err, fs.ErrExist) && flag&os.O_EXCL == 0:
		return os.OpenFile(name, flag&^os.O_CREATE, perm)
	case err != nil:
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	f, err := os.OpenFile(name, flag&^(os.O_CREATE|os.O_EXCL), perm)
	if err != nil {
		return nil, err
	}
	if perm&0o200 == 0 {
		if err := f.Chmod(perm); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// MkdirAll is os.MkdirAll. The folders it makes with a private perm get
// the owner-alone DACL, which the files and folders made in them later
// inherit (SQLite's journal beside a database, a KMS's key blobs); with
// another perm they inherit their parent's ACL. Existing folders keep
// their ACL.
func MkdirAll(path string, perm os.FileMode) error {
	if !private(perm) {
		return os.MkdirAll(path, perm)
	}
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return nil
		}
		return &fs.PathError{Op: "mkdir", Path: path, Err: syscall.ENOTDIR}
	}
	if parent := filepath.Dir(path); parent != path {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := create(path, true); err != nil {
		// Made meanwhile by someone else, or a volume root: fine if it
		// is a folder now.
		if st, serr := os.Lstat(path); serr == nil && st.IsDir() {
			return nil
		}
		return &fs.PathError{Op: "mkdir", Path: path, Err: err}
	}
	return nil
}

// Restrict makes an existing file or folder its owner's alone: its DACL
// becomes one ACE granting the current user full control (inherited by
// a folder's contents made later), protected from its folder's ACEs.
func Restrict(name string) error {
	st, err := os.Stat(name)
	if err != nil {
		return fmt.Errorf("restrict %s to its owner: %w", name, err)
	}
	sd, err := ownerSD(st.IsDir())
	if err != nil {
		return fmt.Errorf("restrict %s to its owner: %w", name, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("restrict %s to its owner: %w", name, err)
	}
	err = windows.SetNamedSecurityInfo(name, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("restrict %s to its owner: set its ACL: %w", name, err)
	}
	return nil
}

// readRights are the rights that let a user read a file, or give
// themselves the right to.
const readRights = windows.FILE_READ_DATA | windows.GENERIC_READ | windows.GENERIC_ALL |
	windows.WRITE_DAC | windows.WRITE_OWNER

// Exposed returns an error wrapping ErrExposed, naming the file and one
// account, when the file's DACL lets anyone but the current user, the
// file's owner, SYSTEM and the Administrators read it (or change who
// may); nil when none does. A file whose ACL cannot be read gives that
// error.
func Exposed(name string) error {
	sd, err := windows.GetNamedSecurityInfo(name, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return fmt.Errorf("read the ACL of %s: %w", name, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		return fmt.Errorf("%s: no DACL, so everyone may: %w", name, ErrExposed)
	}
	owner, _, _ := sd.Owner()
	me, err := currentUser()
	if err != nil {
		return err
	}
	for i := range uint32(dacl.AceCount) {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			return fmt.Errorf("read the ACL of %s: entry %d: %w", name, i, err)
		}
		if ace.Header.AceType != windows.ACCESS_ALLOWED_ACE_TYPE ||
			ace.Header.AceFlags&windows.INHERIT_ONLY_ACE != 0 || ace.Mask&readRights == 0 {
			continue
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
		if sid.Equals(me) || owner != nil && sid.Equals(owner) ||
			sid.IsWellKnown(windows.WinLocalSystemSid) ||
			sid.IsWellKnown(windows.WinBuiltinAdministratorsSid) ||
			sid.IsWellKnown(windows.WinCreatorOwnerRightsSid) {
			continue
		}
		return fmt.Errorf("%s: %s may read it: %w", name, accountName(sid), ErrExposed)
	}
	return nil
}

// Remedy is the command an operator runs to make name its owner's alone:
// icacls dropping the inherited entries and granting the current user
// full control.
func Remedy(name string) string {
	who := "%USERNAME%"
	if me, err := currentUser(); err == nil {
		who = "*" + me.String()
	}
	return fmt.Sprintf(`icacls "%s" /inheritance:r /grant:r "%s:F"`, name, who)
}

// create makes a file (empty) or a folder with the owner-alone DACL.
func create(name string, dir bool) error {
	sd, err := ownerSD(dir)
	if err != nil {
		return err
	}
	sa := &windows.SecurityAttributes{SecurityDescriptor: sd}
	sa.Length = uint32(unsafe.Sizeof(*sa))
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return err
	}
	if dir {
		return windows.CreateDirectory(p, sa)
	}
	h, err := windows.CreateFile(p, windows.FILE_READ_ATTRIBUTES, windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE,
		sa, windows.CREATE_NEW, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return err
	}
	return windows.CloseHandle(h)
}

// ownerSD is a security descriptor whose protected DACL grants the
// current user full control (FA), passed down to a folder's files and
// subfolders (OICI).
func ownerSD(dir bool) (*windows.SECURITY_DESCRIPTOR, error) {
	me, err := currentUser()
	if err != nil {
		return nil, err
	}
	flags := ""
	if dir {
		flags = "OICI"
	}
	sd, err := windows.SecurityDescriptorFromString(fmt.Sprintf("D:P(A;%s;FA;;;%s)", flags, me))
	if err != nil {
		return nil, fmt.Errorf("make the owner's ACL: %w", err)
	}
	return sd, nil
}

// currentUser is the user this process runs as.
func currentUser() (*windows.SID, error) {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("read the current user: %w", err)
	}
	return u.User.Sid.Copy()
}

// accountName names sid as DOMAIN\name, or as its S-1-... string when it
// names no account.
func accountName(sid *windows.SID) string {
	account, domain, _, err := sid.LookupAccount("")
	switch {
	case err != nil:
		return sid.String()
	case domain != "":
		return domain + `\` + account
	}
	return account
}

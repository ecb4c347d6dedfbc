package ownerfiletest

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// Expose sets name's DACL to the current user's full control and
// Everyone's read access, passed down to what is made in it if it is a
// folder.
func Expose(name string) error {
	st, err := os.Stat(name)
	if err != nil {
		return err
	}
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return fmt.Errorf("read the current user: %w", err)
	}
	inherit := ""
	if st.IsDir() {
		inherit = "OICI"
	}
	sd, err := windows.SecurityDescriptorFromString(fmt.Sprintf("D:P(A;%[1]s;FA;;;%[2]s)(A;%[1]s;FR;;;WD)", inherit, u.User.Sid))
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	err = windows.SetNamedSecurityInfo(name, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("give Everyone read access to %s: %w", name, err)
	}
	return nil
}

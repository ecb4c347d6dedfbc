package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"zerotouch/ca"
	"zerotouch/enroll"
	"zerotouch/internal/atomicfile"
	"zerotouch/internal/regid"
	"zerotouch/internal/secret"
	"zerotouch/station"
)

func dpsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dps",
		Short: "Look at and tidy DPS from the station: enrollments, enrollment groups, registrations",
		Args:  cobra.NoArgs,
	}
	group := &cobra.Command{
		Use:   "group",
		Short: "Create, show, list and delete DPS enrollment groups",
		Long: `Create, show, list and delete the DPS enrollment groups that symmetric-key
lines (symmetric_key.group_id) and X.509 lines enrolled by group
(ca.group_id) enroll their boards through. The station creates its line's
group at start unless told not to (create_group: false); these commands do
it by hand.

The DPS service connection string comes from --connection-string-file or
$` + envDPSConnectionString + `; --ca-file names a CA to trust for DPS besides the
system's (an emulator). No key is ever printed.

Exit status: 0 done; 1 DPS refused or failed (a group already there with
other keys or certificates, a group that does not exist); 2 a command-line
mistake (nothing was sent); 3 DPS cannot be used as set up (its certificate
not trusted, its host name unknown, the connection string's key or policy
refused) or no CA in --ca-dir.`,
		Args: cobra.NoArgs,
	}
	group.AddCommand(dpsGroupCreateCmd(g), dpsGroupShowCmd(g), dpsGroupListCmd(g), dpsGroupDeleteCmd(g))
	cmd.AddCommand(group, dpsEnrollmentCmd(g), dpsRegistrationCmd(g))
	return cmd
}

// dpsRecordHelp is the part of the enrollment and registration commands'
// help that they share.
const dpsRecordHelp = `
The DPS service connection string comes from --connection-string-file or
$` + envDPSConnectionString + `; --ca-file names a CA to trust for DPS besides the
system's (an emulator). No key is ever printed. --json prints JSON: one
object, or one line per record for list.

delete takes --etag ETAG, the etag show printed: DPS then deletes the
record only if it has not changed since (else nothing is deleted, exit 1);
without --etag it deletes whatever is there. An enrollment's or a group's
etag is in quotes, which a shell drops unless the whole is quoted again
('"…"'): they are put back when missing.

Exit status: 0 done; 1 DPS refused or failed (no such record, or one that
changed since its etag was read); 2 a command-line mistake (nothing was
sent); 3 DPS cannot be used as set up (its certificate not trusted, its
host name unknown, the connection string's key or policy refused).`

func dpsEnrollmentCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "enrollment",
		Short: "List, show and delete DPS individual enrollments",
		Long: `List, show and delete the individual enrollments in DPS: those the
station uploaded for its boards, and any other.
` + dpsRecordHelp,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(dpsEnrollmentListCmd(g), dpsEnrollmentShowCmd(g), dpsEnrollmentDeleteCmd(g))
	return cmd
}

func dpsRegistrationCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registration",
		Short: "List, show and delete DPS device registrations (registration states)",
		Long: `List, show and delete the registration states DPS keeps of the devices
that registered: the IoT hub each was assigned to and how it went.
Deleting one makes the device register from the start next time; its
enrollment stays. DPS lists registrations by enrollment group only: list
shows those of --group, or of every group; a device enrolled on its own is
seen with show or zerotouch dps enrollment show.
` + dpsRecordHelp,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(dpsRegistrationListCmd(g), dpsRegistrationShowCmd(g), dpsRegistrationDeleteCmd(g))
	return cmd
}

// recordKind names, for messages, what a dps command acts on.
type recordKind struct {
	noun string     // "enrollment"
	cmd  string     // "enrollment", as in zerotouch dps enrollment show
	ids  regid.Kind // what its ID is, for the ID's check and its message
	// quoted: its etag is an HTTP entity-tag in quotes ("…"), as DPS
	// gives an enrollment's or a group's; a registration state's is
	// base64 with no quotes of its own.
	quoted bool
}

var (
	kindEnrollment   = recordKind{"enrollment", "enrollment", regid.Registration, true}
	kindGroup        = recordKind{"enrollment group", "group", regid.Group, true}
	kindRegistration = recordKind{"registration", "registration", regid.Registration, false}
)

// ifMatch is the etag a delete of k sends as If-Match, from --etag. An
// enrollment's or a group's etag is a quoted entity-tag, and show prints
// it with its quotes; pasted into a shell unquoted they are lost, and
// DPS, reading If-Match as HTTP has it, may then answer 412: missing
// quotes are put back. A registration state's etag (base64, no quotes)
// is sent as given, as are "*" and a weak W/"…" one.
func (k recordKind) ifMatch(etag string) string {
	etag = strings.TrimSpace(etag)
	if !k.quoted || etag == "" || etag == "*" || strings.HasPrefix(etag, `W/"`) {
		return etag
	}
	if len(etag) >= 2 && strings.HasPrefix(etag, `"`) && strings.HasSuffix(etag, `"`) {
		return etag
	}
	return `"` + strings.Trim(etag, `"`) + `"`
}

// dpsRecordError words a DPS error of a dps command on one record (or
// its list, id "query"), with its exit code: what no retry can mend
// exits 3, the rest 1. A stale etag says what happened and what to do.
func dpsRecordError(s dpsSettings, k recordKind, id, etag string, err error) error {
	if a := s.advice(err); a != "" {
		return setupError{fmt.Errorf("%s %s: %s: %w", k.noun, id, a, err)}
	}
	switch {
	case errors.Is(err, enroll.ErrNotFound):
		return fmt.Errorf("DPS %s has no %s %s: %w", s.host, k.noun, id, err)
	case errors.Is(err, enroll.ErrPrecondition):
		return fmt.Errorf("DPS %s did not delete %s %s: it changed since etag %s was read (412): read it again with zerotouch dps %s show %s, then delete with its current etag: %w",
			s.host, k.noun, id, etag, k.cmd, id, err)
	}
	return fmt.Errorf("DPS %s: %s %s: %w", s.host, k.noun, id, err)
}

// recordIDCmd is a command on one DPS record (an enrollment, a group, a
// registration) named by its ID: run gets the ID checked, a client for
// DPS, and the settings to name in an error.
func recordIDCmd(g *globals, use, short string, k recordKind, f *dpsFlags, run func(ctx context.Context, client *enroll.Client, s dpsSettings, id string) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// A record to look at or delete may have an ID the rule for
			// new ones refuses (a dash at the end): only its length and
			// characters are checked.
			if err := k.ids.CheckExisting(args[0]); err != nil {
				return usageError{err}
			}
			client, err := groupClient(g, f)
			if err != nil {
				return err
			}
			return run(cmd.Context(), client, f.settings(client.HostName()), args[0])
		},
	}
	f.add(cmd)
	return cmd
}

// deleteResult is what the delete commands print with --json.
type deleteResult struct {
	Kind    string `json:"kind"` // enrollment, registration
	ID      string `json:"id"`
	DPS     string `json:"dps"`
	Outcome string `json:"outcome"` // deleted
}

// enrollmentView is an individual enrollment as the commands print it:
// never its keys.
type enrollmentView struct {
	RegistrationID       string                    `json:"registrationId"`
	DeviceID             string                    `json:"deviceId,omitempty"`
	Attestation          string                    `json:"attestation"`
	ProvisioningStatus   string                    `json:"provisioningStatus,omitempty"`
	ClientCertificates   []groupCert               `json:"clientCertificates,omitempty"`
	AllocationPolicy     string                    `json:"allocationPolicy,omitempty"`
	IoTHubs              []string                  `json:"iotHubs,omitempty"`
	IoTHubHostName       string                    `json:"iotHubHostName,omitempty"`
	CredentialPolicyName string                    `json:"credentialPolicyName,omitempty"`
	ETag                 string                    `json:"etag,omitempty"`
	Created              *time.Time                `json:"createdDateTimeUtc,omitempty"`
	Updated              *time.Time                `json:"lastUpdatedDateTimeUtc,omitempty"`
	Registration         *enroll.RegistrationState `json:"registrationState,omitempty"`
}

func viewEnrollment(e *enroll.Enrollment) enrollmentView {
	v := enrollmentView{RegistrationID: e.RegistrationID, DeviceID: e.DeviceID, Attestation: e.Attestation.Type,
		ProvisioningStatus: e.ProvisioningStatus, AllocationPolicy: e.AllocationPolicy, IoTHubs: e.IoTHubs,
		IoTHubHostName: e.IoTHubHostName, CredentialPolicyName: e.CredentialPolicyName, ETag: e.ETag,
		Created: e.CreatedDateTimeUTC, Updated: e.LastUpdatedDateTimeUTC, Registration: e.RegistrationState}
	if x := e.Attestation.X509; x != nil {
		v.ClientCertificates = viewCerts(x.ClientCertificates)
	}
	return v
}

func dpsEnrollmentListCmd(g *globals) *cobra.Command {
	var f dpsFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the individual enrollments in DPS (one JSON line each with --json)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := groupClient(g, &f)
			if err != nil {
				return err
			}
			var vs []enrollmentView
			for e, err := range client.Enrollments(cmd.Context(), 0) {
				if err != nil {
					return dpsRecordError(f.settings(client.HostName()), kindEnrollment, "query", "", err)
				}
				vs = append(vs, viewEnrollment(e))
			}
			if g.json {
				return encodeLines(g, vs)
			}
			if len(vs) == 0 {
				fmt.Fprintf(g.stderr, "DPS %s has no individual enrollments\n", client.HostName())
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REGISTRATION ID\tATTESTATION\tSTATUS\tDEVICE ID\tCREDENTIAL POLICY")
			for _, v := range vs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.RegistrationID, v.Attestation, v.ProvisioningStatus, dash(v.DeviceID), dash(v.CredentialPolicyName))
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	return cmd
}

func dpsEnrollmentShowCmd(g *globals) *cobra.Command {
	var f dpsFlags
	return recordIDCmd(g, "show ID", "Show an individual enrollment: attestation, status, etag and registration (never its keys)", kindEnrollment, &f,
		func(ctx context.Context, client *enroll.Client, s dpsSettings, id string) error {
			e, err := client.Get(ctx, id)
			if err != nil {
				return dpsRecordError(s, kindEnrollment, id, "", err)
			}
			v := viewEnrollment(e)
			if g.json {
				return json.NewEncoder(g.stdout).Encode(v)
			}
			w := g.stdout
			fmt.Fprintf(w, "enrollment %s in DPS %s\n  attestation  %s\n  status       %s\n", v.RegistrationID, client.HostName(), v.Attestation, v.ProvisioningStatus)
			printField(w, "device ID", v.DeviceID)
			printField(w, "allocation", v.AllocationPolicy)
			printField(w, "IoT hubs", strings.Join(v.IoTHubs, ", "))
			printField(w, "cred policy", v.CredentialPolicyName)
			printCerts(w, v.ClientCertificates)
			if v.Attestation == enroll.AttestationSymmetricKey {
				fmt.Fprintf(w, "  keys         (not shown)\n")
			}
			printField(w, "etag", v.ETag)
			if v.Created != nil {
				fmt.Fprintf(w, "  created      %s\n", v.Created.Format(time.RFC3339))
			}
			if r := v.Registration; r != nil {
				fmt.Fprintf(w, "  registered   %s", r.Status)
				if r.AssignedHub != "" {
					fmt.Fprintf(w, " to %s", r.AssignedHub)
				}
				fmt.Fprintln(w)
			} else {
				fmt.Fprintf(w, "  registered   no\n")
			}
			return nil
		})
}

func dpsEnrollmentDeleteCmd(g *globals) *cobra.Command {
	var f dpsFlags
	var etag string
	cmd := recordIDCmd(g, "delete ID [--etag ETAG]", "Delete an individual enrollment from DPS (its board can then no longer register)", kindEnrollment, &f,
		func(ctx context.Context, client *enroll.Client, s dpsSettings, id string) error {
			etag := kindEnrollment.ifMatch(etag)
			if err := client.Delete(ctx, id, etag); err != nil {
				return dpsRecordError(s, kindEnrollment, id, etag, err)
			}
			return printDeleted(g, kindEnrollment, id, client.HostName())
		})
	cmd.Flags().StringVar(&etag, "etag", "", "delete only if the enrollment still has this etag (as show printed it)")
	return cmd
}

func dpsRegistrationListCmd(g *globals) *cobra.Command {
	var f dpsFlags
	var group string
	cmd := &cobra.Command{
		Use:   "list [--group ID]",
		Short: "List the registrations of the devices of an enrollment group, or of every group (one JSON line each with --json)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if group != "" {
				if err := regid.Group.CheckExisting(group); err != nil {
					return usageError{fmt.Errorf("--group %q: %w", group, err)}
				}
			}
			client, err := groupClient(g, &f)
			if err != nil {
				return err
			}
			s := f.settings(client.HostName())
			groups := []string{group}
			if group == "" {
				groups = nil
				for eg, err := range client.Groups(cmd.Context(), 0) {
					if err != nil {
						return dpsRecordError(s, kindGroup, "query", "", err)
					}
					groups = append(groups, eg.EnrollmentGroupID)
				}
			}
			var rows []registrationRow
			for _, gid := range groups {
				for st, err := range client.RegistrationStates(cmd.Context(), gid, 0) {
					if err != nil {
						return dpsRecordError(s, kindGroup, gid, "", err)
					}
					rows = append(rows, registrationRow{gid, st})
				}
			}
			if g.json {
				return encodeLines(g, rows)
			}
			if len(rows) == 0 {
				if group != "" {
					fmt.Fprintf(g.stderr, "DPS %s has no registrations through enrollment group %s\n", client.HostName(), group)
				} else {
					fmt.Fprintf(g.stderr, "DPS %s has no registrations through its %d enrollment groups\n", client.HostName(), len(groups))
				}
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REGISTRATION ID\tGROUP\tSTATUS\tASSIGNED HUB\tDEVICE ID\tLAST UPDATED")
			for _, r := range rows {
				updated := "-"
				if r.LastUpdatedDateTimeUTC != nil {
					updated = r.LastUpdatedDateTimeUTC.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.RegistrationID, r.Group, r.Status, dash(r.AssignedHub), dash(r.DeviceID), updated)
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&group, "group", "", "the enrollment group whose devices' registrations to list (default: every group)")
	return cmd
}

// registrationRow is a line of registration list --json: the state and
// the group it was listed through.
type registrationRow struct {
	Group string `json:"enrollmentGroupId"`
	*enroll.RegistrationState
}

func dpsRegistrationShowCmd(g *globals) *cobra.Command {
	var f dpsFlags
	return recordIDCmd(g, "show ID", "Show a device's registration: status, assigned IoT hub, etag", kindRegistration, &f,
		func(ctx context.Context, client *enroll.Client, s dpsSettings, id string) error {
			r, err := client.GetRegistrationState(ctx, id)
			if err != nil {
				return dpsRecordError(s, kindRegistration, id, "", err)
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(r)
			}
			w := g.stdout
			fmt.Fprintf(w, "registration %s in DPS %s\n  status       %s\n", r.RegistrationID, client.HostName(), r.Status)
			printField(w, "substatus", r.Substatus)
			printField(w, "IoT hub", r.AssignedHub)
			printField(w, "device ID", r.DeviceID)
			if r.ErrorCode != 0 || r.ErrorMessage != "" {
				fmt.Fprintf(w, "  error        %d %s\n", r.ErrorCode, r.ErrorMessage)
			}
			printField(w, "etag", r.ETag)
			if r.CreatedDateTimeUTC != nil {
				fmt.Fprintf(w, "  created      %s\n", r.CreatedDateTimeUTC.Format(time.RFC3339))
			}
			if r.LastUpdatedDateTimeUTC != nil {
				fmt.Fprintf(w, "  updated      %s\n", r.LastUpdatedDateTimeUTC.Format(time.RFC3339))
			}
			return nil
		})
}

func dpsRegistrationDeleteCmd(g *globals) *cobra.Command {
	var f dpsFlags
	var etag string
	cmd := recordIDCmd(g, "delete ID [--etag ETAG]", "Delete a device's registration state (the device registers from the start next time)", kindRegistration, &f,
		func(ctx context.Context, client *enroll.Client, s dpsSettings, id string) error {
			etag := kindRegistration.ifMatch(etag)
			if err := client.DeleteRegistrationState(ctx, id, etag); err != nil {
				return dpsRecordError(s, kindRegistration, id, etag, err)
			}
			return printDeleted(g, kindRegistration, id, client.HostName())
		})
	cmd.Flags().StringVar(&etag, "etag", "", "delete only if the registration still has this etag (as show printed it)")
	return cmd
}

func printDeleted(g *globals, k recordKind, id, host string) error {
	if g.json {
		return json.NewEncoder(g.stdout).Encode(deleteResult{Kind: k.cmd, ID: id, DPS: host, Outcome: "deleted"})
	}
	fmt.Fprintf(g.stdout, "%s %s deleted from DPS %s\n", k.noun, id, host)
	return nil
}

// encodeLines prints vs as JSON, one line each.
func encodeLines[T any](g *globals, vs []T) error {
	enc := json.NewEncoder(g.stdout)
	for _, v := range vs {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

func printField(w io.Writer, name, value string) {
	if value != "" {
		fmt.Fprintf(w, "  %-12s %s\n", name, value)
	}
}

func printCerts(w io.Writer, cs []groupCert) {
	for _, c := range cs {
		fmt.Fprintf(w, "  %-12s %s\n  %-12s sha256 %s, valid to %s\n", c.Role+" cert", c.Subject, "", c.SHA256, c.NotAfter.Format(time.DateOnly))
	}
}

type groupCreateFlags struct {
	dps         dpsFlags
	id          string
	keyFile     string
	caDir       string
	certificate string
}

func dpsGroupCreateCmd(g *globals) *cobra.Command {
	var f groupCreateFlags
	cmd := &cobra.Command{
		Use:   "create --id ID (--symmetric-key-file FILE | --ca-dir DIR | --certificate FILE)",
		Short: "Create an enrollment group in DPS (symmetric-key or X.509)",
		Long: `Create an enrollment group in DPS.

A symmetric-key group: --symmetric-key-file FILE, the group's primary key,
base64 (the file symmetric_key.key_file names). When FILE does not exist, a
new random key is made and written there, readable by you alone (mode
0600); it is never printed.

An X.509 group, whose signing certificate is a CA's issuing intermediate:
--ca-dir DIR, a local CA (zerotouch ca init; its password is not needed),
or --certificate FILE, a PEM file whose first certificate is the
intermediate (a step-ca's).

A group already in DPS is left as it is: the command checks that it holds
the same key or certificate (exit 0) or says what differs (exit 1).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGroupCreate(cmd.Context(), g, &f)
		},
	}
	f.dps.add(cmd)
	fs := cmd.Flags()
	fs.StringVar(&f.id, "id", "", "the enrollment group's ID")
	fs.StringVar(&f.keyFile, "symmetric-key-file", "", "a symmetric-key group: the file holding its primary key, base64 (made, with a new random key, when missing)")
	fs.StringVar(&f.caDir, "ca-dir", "", "an X.509 group: the local CA folder whose intermediate signs the boards' certificates")
	fs.StringVar(&f.certificate, "certificate", "", "an X.509 group: a PEM file whose first certificate is the CA's issuing intermediate")
	return cmd
}

// groupResult is what create and delete print (one JSON object with
// --json).
type groupResult struct {
	ID          string `json:"enrollmentGroupId"`
	Attestation string `json:"attestation,omitempty"`
	DPS         string `json:"dps"`
	// Outcome is "created", "exists" (and matches) or "deleted".
	Outcome string `json:"outcome"`
	// KeyFile is where a new symmetric key was written; "" when none
	// was made.
	KeyFile string `json:"newKeyFile,omitempty"`
}

func runGroupCreate(ctx context.Context, g *globals, f *groupCreateFlags) error {
	if f.id == "" {
		return usageError{errors.New("--id is missing: the enrollment group's ID")}
	}
	if err := regid.Group.Check(f.id, regid.MaxLen); err != nil {
		return usageError{fmt.Errorf("--id %q: %w", f.id, err)}
	}
	n := 0
	for _, s := range []string{f.keyFile, f.caDir, f.certificate} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return usageError{errors.New("give one of --symmetric-key-file (a symmetric-key group), --ca-dir or --certificate (an X.509 group)")}
	}
	dcfg, err := f.dps.config(g)
	if err != nil {
		return err
	}
	lg := station.LineGroup{ID: f.id, Create: true, Setting: "--id", CreateSetting: "create"}
	var cred station.GroupCredential
	var newKey bool
	switch {
	case f.keyFile != "":
		lg.Attestation = enroll.AttestationSymmetricKey
		if cred.Key, newKey, err = groupKeyFile(g, f.keyFile); err != nil {
			return err
		}
	case f.caDir != "":
		lg.Attestation = enroll.AttestationX509
		if cred.Chain, err = ca.ReadChain(f.caDir); err != nil {
			return setupError{fmt.Errorf("--ca-dir: %w", err)}
		}
	default:
		lg.Attestation = enroll.AttestationX509
		b, err := os.ReadFile(f.certificate)
		if err != nil {
			return usageError{fmt.Errorf("--certificate: %w", err)}
		}
		c, err := enroll.ParseCertificate(string(b))
		if err != nil {
			return usageError{fmt.Errorf("--certificate %s: %w", f.certificate, err)}
		}
		if !c.IsCA {
			return usageError{fmt.Errorf("--certificate %s: %q is not a CA certificate: give the CA's issuing intermediate", f.certificate, c.Subject)}
		}
		cred.Chain = []*x509.Certificate{c}
	}
	client, err := enroll.NewClient(dcfg)
	if err != nil {
		return usageError{err}
	}
	created, err := station.EnsureGroup(ctx, client, lg, cred, g.log)
	if err != nil {
		return dpsRecordError(f.dps.settings(client.HostName()), kindGroup, f.id, "", err)
	}
	res := groupResult{ID: f.id, Attestation: lg.Attestation, DPS: client.HostName(), Outcome: "exists"}
	if created {
		res.Outcome = "created"
	}
	if newKey {
		res.KeyFile = f.keyFile
	}
	if g.json {
		return json.NewEncoder(g.stdout).Encode(res)
	}
	if created {
		fmt.Fprintf(g.stdout, "enrollment group %s (%s) created in DPS %s\n", f.id, lg.Attestation, res.DPS)
	} else {
		fmt.Fprintf(g.stdout, "enrollment group %s (%s) is already in DPS %s, with this key or certificate\n", f.id, lg.Attestation, res.DPS)
	}
	if newKey {
		fmt.Fprintf(g.stdout, "its new primary key is in %s (mode 0600): name it in symmetric_key.key_file\n", f.keyFile)
	}
	return nil
}

// groupKeyFile reads a symmetric-key group's key from file, base64; when
// the file does not exist it makes a random key and writes it there
// (made is true).
func groupKeyFile(g *globals, file string) (key []byte, made bool, err error) {
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, station.GroupKeyBytes)
		rand.Read(key)
		if err := atomicfile.Write(file, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, false, setupError{fmt.Errorf("--symmetric-key-file: write the new key: %w", err)}
		}
		return key, true, nil
	}
	b, err := secret.Read(g.log, "--symmetric-key-file", file, "")
	if err != nil {
		return nil, false, usageError{fmt.Errorf("--symmetric-key-file: %w", err)}
	}
	key, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) == 0 {
		return nil, false, usageError{fmt.Errorf("--symmetric-key-file %s does not hold a base64 key (as DPS shows a group's primary key)", file)}
	}
	return key, false, nil
}

// groupClient is the DPS client of a dps command, from its flags.
func groupClient(g *globals, f *dpsFlags) (*enroll.Client, error) {
	dcfg, err := f.config(g)
	if err != nil {
		return nil, err
	}
	c, err := enroll.NewClient(dcfg)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

func dpsGroupShowCmd(g *globals) *cobra.Command {
	var f dpsFlags
	return recordIDCmd(g, "show ID", "Show an enrollment group: its attestation, status and certificates (never its keys)", kindGroup, &f,
		func(ctx context.Context, client *enroll.Client, s dpsSettings, id string) error {
			eg, err := client.GetGroup(ctx, id)
			if err != nil {
				return dpsRecordError(s, kindGroup, id, "", err)
			}
			v := viewGroup(eg)
			if g.json {
				return json.NewEncoder(g.stdout).Encode(v)
			}
			w := g.stdout
			fmt.Fprintf(w, "enrollment group %s in DPS %s\n  attestation  %s\n  status       %s\n", v.ID, client.HostName(), v.Attestation, v.ProvisioningStatus)
			if v.AllocationPolicy != "" {
				fmt.Fprintf(w, "  allocation   %s\n", v.AllocationPolicy)
			}
			if len(v.IoTHubs) > 0 {
				fmt.Fprintf(w, "  IoT hubs     %s\n", strings.Join(v.IoTHubs, ", "))
			}
			for _, c := range v.SigningCertificates {
				fmt.Fprintf(w, "  %-12s %s\n  %-12s sha256 %s, valid to %s\n", c.Role+" cert", c.Subject, "", c.SHA256, c.NotAfter.Format(time.DateOnly))
			}
			for _, r := range v.CAReferences {
				fmt.Fprintf(w, "  CA reference %s\n", r)
			}
			if v.Attestation == enroll.AttestationSymmetricKey {
				fmt.Fprintf(w, "  keys         (not shown)\n")
			}
			printField(w, "etag", v.ETag)
			if v.Created != nil {
				fmt.Fprintf(w, "  created      %s\n", v.Created.Format(time.RFC3339))
			}
			return nil
		})
}

func dpsGroupListCmd(g *globals) *cobra.Command {
	var f dpsFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the enrollment groups in DPS (one JSON line each with --json)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := groupClient(g, &f)
			if err != nil {
				return err
			}
			var vs []groupView
			for eg, err := range client.Groups(cmd.Context(), 0) {
				if err != nil {
					return dpsRecordError(f.settings(client.HostName()), kindGroup, "query", "", err)
				}
				vs = append(vs, viewGroup(eg))
			}
			if g.json {
				return encodeLines(g, vs)
			}
			if len(vs) == 0 {
				fmt.Fprintf(g.stderr, "DPS %s has no enrollment groups\n", client.HostName())
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tATTESTATION\tSTATUS\tSIGNING CERTIFICATE")
			for _, v := range vs {
				cert := "-"
				if len(v.SigningCertificates) > 0 {
					cert = v.SigningCertificates[0].Subject
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.ID, v.Attestation, v.ProvisioningStatus, cert)
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	return cmd
}

func dpsGroupDeleteCmd(g *globals) *cobra.Command {
	var f dpsFlags
	var etag string
	cmd := recordIDCmd(g, "delete ID [--etag ETAG]", "Delete an enrollment group from DPS (its boards can then no longer register)", kindGroup, &f,
		func(ctx context.Context, client *enroll.Client, s dpsSettings, id string) error {
			etag := kindGroup.ifMatch(etag)
			if err := client.DeleteGroup(ctx, id, etag); err != nil {
				return dpsRecordError(s, kindGroup, id, etag, err)
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(groupResult{ID: id, DPS: client.HostName(), Outcome: "deleted"})
			}
			fmt.Fprintf(g.stdout, "enrollment group %s deleted from DPS %s\n", id, client.HostName())
			return nil
		})
	cmd.Flags().StringVar(&etag, "etag", "", "delete only if the group still has this etag (as show printed it)")
	return cmd
}

// groupView is an enrollment group as the commands print it: never its
// keys.
type groupView struct {
	ID                  string      `json:"enrollmentGroupId"`
	Attestation         string      `json:"attestation"`
	ProvisioningStatus  string      `json:"provisioningStatus,omitempty"`
	SigningCertificates []groupCert `json:"signingCertificates,omitempty"`
	CAReferences        []string    `json:"caReferences,omitempty"`
	AllocationPolicy    string      `json:"allocationPolicy,omitempty"`
	IoTHubs             []string    `json:"iotHubs,omitempty"`
	IoTHubHostName      string      `json:"iotHubHostName,omitempty"`
	ETag                string      `json:"etag,omitempty"`
	Created             *time.Time  `json:"createdDateTimeUtc,omitempty"`
	Updated             *time.Time  `json:"lastUpdatedDateTimeUtc,omitempty"`
}

// viewCerts describes an X.509 attestation's primary and secondary
// certificates.
func viewCerts(sc *enroll.X509Certificates) []groupCert {
	if sc == nil {
		return nil
	}
	var out []groupCert
	for _, c := range []struct {
		role string
		c    *enroll.X509Certificate
	}{{"primary", sc.Primary}, {"secondary", sc.Secondary}} {
		if c.c == nil {
			continue
		}
		gc := groupCert{Role: c.role}
		if in := c.c.Info; in != nil {
			gc.Subject, gc.SHA256, gc.NotAfter = in.SubjectName, strings.ToLower(in.SHA256Thumbprint), in.NotAfterUTC
		} else if cert, err := enroll.ParseCertificate(c.c.Certificate); err == nil {
			gc.Subject, gc.SHA256, gc.NotAfter = cert.Subject.String(), ca.Fingerprint(cert), cert.NotAfter.UTC()
		}
		out = append(out, gc)
	}
	return out
}

// groupCert is a signing certificate of an X.509 group, or a client
// certificate of an X.509 enrollment.
type groupCert struct {
	Role     string    `json:"role"` // primary or secondary
	Subject  string    `json:"subject"`
	SHA256   string    `json:"sha256Thumbprint"` // lowercase hex
	NotAfter time.Time `json:"notAfter"`
}

func viewGroup(eg *enroll.EnrollmentGroup) groupView {
	v := groupView{ID: eg.EnrollmentGroupID, Attestation: eg.Attestation.Type, ProvisioningStatus: eg.ProvisioningStatus,
		AllocationPolicy: eg.AllocationPolicy, IoTHubs: eg.IoTHubs, IoTHubHostName: eg.IoTHubHostName, ETag: eg.ETag,
		Created: eg.CreatedDateTimeUTC, Updated: eg.LastUpdatedDateTimeUTC}
	x := eg.Attestation.X509
	if x == nil {
		return v
	}
	v.SigningCertificates = viewCerts(x.SigningCertificates)
	if r := x.CAReferences; r != nil {
		for _, s := range []string{r.Primary, r.Secondary} {
			if s != "" {
				v.CAReferences = append(v.CAReferences, s)
			}
		}
	}
	return v
}

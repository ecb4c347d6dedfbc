package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"zerotouch/station"
)

// maskedValue stands in for a value config show does not print.
const maskedValue = "(set, not shown)"

func configCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check the station's configuration and print it with its defaults",
		Long: `Read the station's configuration (station.yaml). docs/config.md lists every
key with its type, default and meaning.

Exit status: 0 when the configuration is valid; 2 when the command line or
the configuration is wrong (the message names the key).`,
	}
	cmd.AddCommand(configShowCmd(g))
	return cmd
}

func configShowCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "show [--config station.yaml] [--json]",
		Short: "Print the effective configuration, every default filled in",
		Long: `Read and check the station's configuration as zerotouch run and gui do,
and print the configuration the station runs with: every key, defaults
filled in, as YAML (with --json, one JSON object with the same keys;
durations as Go durations, "2s"). A key left out that the station fills in
later (ca.provisioner, ca.validity, labels.timeout) shows empty or 0s;
docs/config.md gives those defaults. A null section or key (firmware,
dps.upload) is one left out.

gui.supervisor_password_hash, when set, is printed as "` + maskedValue + `",
and the password of a ca.url that holds one as xxxxx; the secrets
themselves are never in the file, only the files that hold them.

Exit status: 0 when the configuration is valid; 2 when it cannot be read
or is wrong (the message names the key), or the command line is wrong.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := station.LoadConfig(file)
			if err != nil {
				return usageError{err}
			}
			return printConfig(g.stdout, cfg, g.json)
		},
	}
	cmd.Flags().StringVar(&file, "config", "station.yaml", "the station's configuration (YAML)")
	return cmd
}

// printConfig writes cfg to w as YAML, or as one JSON object, with its
// secrets masked (see maskConfig).
func printConfig(w io.Writer, cfg *station.Config, asJSON bool) error {
	var doc yaml.Node
	if err := doc.Encode(maskConfig(*cfg)); err != nil {
		return fmt.Errorf("encode the configuration: %w", err)
	}
	// The key handle as station.yaml's reference writes it.
	if n := mappingValue(mappingValue(&doc, "key"), "handle"); n != nil {
		n.Value = fmt.Sprintf("%#08x", cfg.Key.Handle)
	}
	if !asJSON {
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(&doc); err != nil {
			return fmt.Errorf("encode the configuration: %w", err)
		}
		return enc.Close()
	}
	var m map[string]any
	if err := doc.Decode(&m); err != nil {
		return fmt.Errorf("encode the configuration: %w", err)
	}
	return json.NewEncoder(w).Encode(m)
}

// maskConfig returns c with the values that are not to be printed
// masked: the supervisor's password hash (maskedValue), and the password
// in ca.url's user information (as url.URL.Redacted).
func maskConfig(c station.Config) station.Config {
	if c.GUI.SupervisorPasswordHash != "" {
		c.GUI.SupervisorPasswordHash = maskedValue
	}
	if u, err := url.Parse(c.CA.URL); err == nil && u.User != nil {
		c.CA.URL = u.Redacted()
	}
	return c
}

// mappingValue returns the value of key in the YAML mapping n (or the
// document holding it), nil when there is none.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

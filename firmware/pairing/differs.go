package pairing

// Differs reports whether a and b differ in the pair-level setting key (a
// config key of SettingKeys); false for a key that is not one.
func Differs(a, b Settings, key string) bool {
	r := lookupSetting(key)
	return r != nil && r.get(&a) != r.get(&b)
}

// Diff returns the config keys of every pair-level setting in which a and
// b differ, in the order of SettingKeys (nil when they agree).
func Diff(a, b Settings) []string {
	var keys []string
	for _, r := range settingsTable {
		if r.get(&a) != r.get(&b) {
			keys = append(keys, r.key)
		}
	}
	return keys
}

// Value returns the setting key of s in its config text form ("100ms",
// "192.168.1.10/24"; "" when not set or not a pair-level key).
func (s Settings) Value(key string) string {
	if r := lookupSetting(key); r != nil {
		return r.get(&s)
	}
	return ""
}

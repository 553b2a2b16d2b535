package pairing

// Differs reports whether a and b differ in the pair-level setting key (a
// config key of SettingKeys); false for a key that is not one.
func Differs(a, b Settings, key string) bool {
	r := lookupSetting(key)
	return r != nil && r.get(&a) != r.get(&b)
}

include $(sort $(wildcard $(BR2_EXTERNAL_PAIRGUARD_PATH)/package/*/*.mk))

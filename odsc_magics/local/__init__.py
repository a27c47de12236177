"""A local emulator of the OCI Data Science model-deployment service (`odsc-magics local`)."""

"""placeholder"""
def run_demo(fast: bool, cleanup: bool) -> None:
    pass

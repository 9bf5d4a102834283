async def test_run_wait_python_script(api):
    await api.create_script("u/admin/add", "def main(a: int, b: int = 2):\n    return a + b\n")
    status, body = await api.run_wait("u/admin/add", {"a": 40})
    assert (status, body) == (200, 42)

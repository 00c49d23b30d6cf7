from tests.helpers import PASSWORD, assert_problem, new_user


async def test_login_and_me(client, tenant):
    response = await client.get("/v1/me", headers=tenant.owner.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["email"] == tenant.owner.email
    assert [w["id"] for w in body["workspaces"]] == [tenant.ws]
    assert body["workspaces"][0]["role"] == "owner"


async def test_wrong_password_is_401(client):
    caller = await new_user(client)
    response = await client.post("/v1/auth/login", json={"email": caller.email, "password": PASSWORD + "x"})
    assert_problem(response, 401)

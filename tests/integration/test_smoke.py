from tests.conftest import ADMIN


async def test_created_product_reads_back(client) -> None:
    # Given a category
    r = await client.post("/api/categories", json={"name": "Garden Tools"}, headers=ADMIN)
    assert r.status == 201
    # When a product is created in it
    r = await client.post(
        "/api/products", json={"name": "Steel Spade", "price": "19.99", "category": "garden-tools"}, headers=ADMIN
    )
    assert r.status == 201
    body = await r.json()
    # Then it reads back with its fields
    r = await client.get(f"/api/products/{body['slug']}")
    assert r.status == 200
    product = await r.json()
    assert product["price"] == "19.99"
    assert product["category"] == "garden-tools"
